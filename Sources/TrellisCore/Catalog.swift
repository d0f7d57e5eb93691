/// A node of the catalog: a machine (or registry) that hosts service instances.
public struct Node: Sendable, Equatable {
    public var id: String
    public var name: String
    public var address: String
    public var datacenter: String
    public var taggedAddresses: [String: String]
    public var meta: [String: String]
    public var createIndex: UInt64 = 0
    public var modifyIndex: UInt64 = 0

    public init(id: String, name: String, address: String, datacenter: String,
                taggedAddresses: [String: String] = [:], meta: [String: String] = [:]) {
        self.id = id
        self.name = name
        self.address = address
        self.datacenter = datacenter
        self.taggedAddresses = taggedAddresses
        self.meta = meta
    }
}

/// An address a service is also reachable at (`TaggedAddresses` entry of a service).
public struct ServiceAddress: Sendable, Equatable {
    public var address: String
    public var port: Int

    public init(address: String, port: Int) {
        self.address = address
        self.port = port
    }
}

/// One registered instance of a service on a node.
public struct ServiceInstance: Sendable, Equatable {
    public var node: String
    public var id: String
    public var name: String
    public var tags: [String] = []
    public var address: String = ""
    public var port: Int = 0
    public var meta: [String: String] = [:]
    public var taggedAddresses: [String: ServiceAddress] = [:]
    public var weights = Weights()
    public var enableTagOverride = false
    /// Consul's service kind: empty for a typical service, `connect-proxy`, `mesh-gateway`, ….
    public var kind = ""
    /// A unix socket the service listens on instead of (or besides) its port.
    public var socketPath = ""
    /// Consul's `Proxy`, `Connect` and `Locality` objects, kept as registered and returned unchanged.
    public var proxy: JSON?
    public var connect: JSON?
    public var locality: JSON?
    public var createIndex: UInt64 = 0
    public var modifyIndex: UInt64 = 0

    /// DNS/load-balancer weights by health, as in Consul (`Passing`, `Warning`).
    public struct Weights: Sendable, Equatable {
        public var passing = 1
        public var warning = 1
        public init(passing: Int = 1, warning: Int = 1) {
            self.passing = passing
            self.warning = warning
        }

        /// Consul's `ValidateWeights` message for weights it refuses, nil for valid ones.
        public var invalidReason: String? {
            if passing < 1 { return "Passing must be greater than 0" }
            if warning < 0 { return "Warning must be greater or equal than 0" }
            if passing > 65535 || warning > 65535 { return "DNS Weight must be between 0 and 65535" }
            return nil
        }
    }

    public init(node: String, id: String, name: String) {
        self.node = node
        self.id = id
        self.name = name
    }

    /// The service whose mesh traffic this instance accepts: the destination of a `connect-proxy`,
    /// or the instance's own name when it is Connect-native; nil otherwise.
    public var connectTarget: String? {
        if kind == "connect-proxy" { return proxy?["DestinationServiceName"]?.stringValue }
        if kind.isEmpty, connect?["Native"]?.boolValue == true { return name }
        return nil
    }
}

/// How a check is run; empty for checks whose status is only set from outside (TTL, node checks).
public struct CheckDefinition: Sendable, Equatable {
    public var http: String = ""
    public var method: String = ""
    public var header: [String: [String]] = [:]
    public var body: String = ""
    public var tlsSkipVerify = false
    public var tcp: String = ""
    /// A UDP check's target: kept for checks of other nodes registered through the catalog, not run.
    public var udp: String = ""
    /// A script check's command and arguments (run only with `enable_script_checks`).
    public var args: [String] = []
    public var ttl: Duration?
    public var interval: Duration?
    public var timeout: Duration?
    public var deregisterCriticalServiceAfter: Duration?
    public var successBeforePassing = 0
    public var failuresBeforeWarning = 0
    public var failuresBeforeCritical = 0

    public init() {}

    /// Consul's check type name: `http`, `tcp`, `ttl`, or empty.
    public var type: String {
        if !http.isEmpty { return "http" }
        if !tcp.isEmpty { return "tcp" }
        if !udp.isEmpty { return "udp" }
        if !args.isEmpty { return "script" }
        if ttl != nil { return "ttl" }
        return ""
    }
}

/// A health check attached to a node or to one service instance.
public struct HealthCheck: Sendable, Equatable {
    public var node: String
    public var checkID: String
    public var name: String
    public var status: HealthStatus = .critical
    public var notes: String = ""
    public var output: String = ""
    public var serviceID: String = ""
    public var serviceName: String = ""
    public var serviceTags: [String] = []
    public var definition = CheckDefinition()
    public var createIndex: UInt64 = 0
    public var modifyIndex: UInt64 = 0

    public init(node: String, checkID: String, name: String) {
        self.node = node
        self.checkID = checkID
        self.name = name
    }
}
