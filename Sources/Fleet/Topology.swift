import Foundation
import Policy
import TrellisCore

/// A fleet to run on one machine: the registry, the collector and every service with its replicas.
/// Read from YAML; relative paths are relative to the topology file.
public struct Topology: Sendable {
    public struct Service: Sendable {
        public var name: String
        /// The command and its arguments; the executable is resolved to an absolute path.
        public var command: [String]
        public var replicas = 1
        public var upstreams: [String] = []
        public var tags: [String] = []
        public var meta: [(key: String, value: String)] = []
        /// The last `canary.replicas` instances carry `canary.tags` instead of `tags`.
        public var canary: (replicas: Int, tags: [String])?
        public var policyFile: String?
        /// The policy file's text as `check` validated it; what `trellis up` stores.
        public var policyText: String?
        public var healthPath: String?
        /// The inbound mutual TLS mode of its sidecars (`strict`, `permissive`, `off`); every hop
        /// between sidecars uses mutual TLS where the callee takes it.
        public var mtls = "strict"

        /// The tags of replica `index` (0-based).
        public func tags(ofReplica index: Int) -> [String] {
            guard let canary, index >= replicas - canary.replicas else { return tags }
            return canary.tags
        }
    }

    /// The fleet's public entry (`trellis gateway`), with rules from its policy file.
    public struct Gateway: Sendable {
        public var name = "gateway"
        /// Fixed port; nil picks a free one.
        public var port: Int?
        public var workers = 1
        public var policyFile: String
        /// The policy file's text as `check` validated it; what `trellis up` stores.
        public var policyText: String?
        /// The services its rules send to, once checked.
        public var backends: [String] = []
    }

    /// Where the registry store, the collector's buffer, the services' databases and the logs go.
    public var dataDir: String
    /// Fixed ports; nil picks a free one.
    public var registryPort: Int?
    /// Whether the registry runs with ACLs default-deny, each process holding only its own rights.
    public var acl = true
    public var collectorPort: Int?
    public var collectorConfig: String?
    public var services: [Service]
    public var gateway: Gateway?

    /// Reads and checks a topology file; errors name the file and the field.
    public static func load(file: String) throws(ConfigError) -> Topology {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ConfigError("cannot read the topology file", file: file)
        }
        let base = URL(fileURLWithPath: file).deletingLastPathComponent().path
        do { return try parse(String(decoding: data, as: UTF8.self), relativeTo: base) } catch { throw error.inFile(file) }
    }

    public static func parse(_ yaml: String, relativeTo base: String) throws(ConfigError) -> Topology {
        let root = try ConfigReader(yaml: yaml, allowed: ["data_dir", "registry", "collector", "gateway", "services"])
        var topology = Topology(dataDir: try root.string("data_dir") ?? ".trellis", services: [])
        if let registry = try root.map("registry", allowed: ["port", "acl"]) {
            topology.registryPort = try port(registry)
            topology.acl = try registry.bool("acl") ?? true
        }
        if let collector = try root.map("collector", allowed: ["port", "config"]) {
            topology.collectorPort = try port(collector)
            topology.collectorConfig = try collector.string("config").map { absolute($0, base: base) }
        }
        if let gateway = try root.map("gateway", allowed: ["name", "port", "workers", "policy"]) {
            var parsed = Gateway(policyFile: absolute(try gateway.requiredString("policy"), base: base))
            parsed.name = try gateway.string("name") ?? parsed.name
            guard parsed.name.range(of: "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", options: .regularExpression) != nil else {
                throw gateway.error("name", "must be lower-case letters, digits and dashes, got \"\(parsed.name)\"")
            }
            parsed.port = try port(gateway)
            parsed.workers = try gateway.int("workers") ?? 1
            guard (1...64).contains(parsed.workers) else { throw gateway.error("workers", "must be 1-64") }
            topology.gateway = parsed
        }
        let entries = try root.list("services", allowed: ["name", "command", "replicas", "upstreams", "tags", "meta", "canary",
                                                          "policy", "health_path", "mtls"])
        guard !entries.isEmpty else { throw root.error("services", "list at least one service") }
        for entry in entries {
            var service = Service(name: try entry.requiredString("name"), command: try entry.strings("command"))
            guard service.name.range(of: "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", options: .regularExpression) != nil else {
                throw entry.error("name", "must be lower-case letters, digits and dashes, got \"\(service.name)\"")
            }
            guard !service.command.isEmpty else { throw entry.error("command", "is required: the executable and its arguments") }
            service.replicas = try entry.int("replicas") ?? 1
            guard (1...64).contains(service.replicas) else { throw entry.error("replicas", "must be 1-64") }
            service.upstreams = try entry.strings("upstreams")
            service.tags = try entry.strings("tags")
            service.meta = try entry.stringMap("meta")
            if let canary = try entry.map("canary", allowed: ["replicas", "tags"]) {
                let count = try canary.int("replicas") ?? 1
                guard (1..<service.replicas).contains(count) else {
                    throw canary.error("replicas", "must leave at least one regular replica (1-\(service.replicas - 1))")
                }
                service.canary = (count, try canary.strings("tags"))
            }
            service.policyFile = try entry.string("policy").map { absolute($0, base: base) }
            service.healthPath = try entry.string("health_path")
            if let mode = try entry.string("mtls") {
                guard ["strict", "permissive", "off"].contains(mode) else {
                    throw entry.error("mtls", "must be strict, permissive or off, got \"\(mode)\"")
                }
                service.mtls = mode
            }
            topology.services.append(service)
        }
        return topology
    }

    private static func port(_ reader: ConfigReader) throws(ConfigError) -> Int? {
        guard let port = try reader.int("port"), port != 0 else { return nil }
        guard port <= 65535 else { throw reader.error("port", "must be 1-65535, or 0 for a free one") }
        return port
    }

    static func absolute(_ path: String, base: String) -> String {
        path.hasPrefix("/") ? path : URL(fileURLWithPath: base).appendingPathComponent(path).standardized.path
    }

    /// Everything that would make the fleet fail once started, found before anything starts:
    /// duplicate names, unknown upstreams, commands not found (resolved here to absolute paths
    /// in PATH, then beside the `trellis` executable) and invalid policies.
    public mutating func check(searchPath: String) throws(ConfigError) {
        var seen = Set<String>()
        for service in services where !seen.insert(service.name).inserted {
            throw ConfigError(path: "services", "the name \"\(service.name)\" is used twice")
        }
        if let gateway {
            guard !seen.contains(gateway.name) else { throw ConfigError(path: "gateway.name", "\"\(gateway.name)\" is also a service's name") }
            let read: (text: String, policy: GatewayPolicy)
            do { read = try GatewayPolicyParser.read(file: gateway.policyFile) } catch { throw ConfigError(path: "gateway.policy", "\(error)") }
            for backend in read.policy.backendServices where !seen.contains(backend) {
                throw ConfigError(path: "gateway.policy", "a rule sends to unknown service \"\(backend)\" (known: \(seen.sorted().joined(separator: ", ")))")
            }
            self.gateway?.policyText = read.text
            self.gateway?.backends = read.policy.backendServices
        }
        for index in services.indices {
            let service = services[index]
            for upstream in service.upstreams where !seen.contains(upstream) {
                throw ConfigError(path: "services.\(service.name).upstreams", "unknown service \"\(upstream)\" (known: \(seen.sorted().joined(separator: ", ")))")
            }
            if service.upstreams.contains(SidecarPolicy.inboundListenerName) {
                throw ConfigError(path: "services.\(service.name).upstreams", "\"\(SidecarPolicy.inboundListenerName)\" names the sidecar's inbound listener; rename that service")
            }
            if service.upstreams.contains(service.name) {
                throw ConfigError(path: "services.\(service.name).upstreams", "a service cannot be its own upstream")
            }
            do {
                services[index].command[0] = try ExecutableLookup.resolve(service.command[0], path: searchPath)
            } catch {
                throw ConfigError(path: "services.\(service.name).command", "\(error)")
            }
            if let file = service.policyFile {
                let read: (text: String, policy: SidecarPolicy)
                do { read = try PolicyParser.read(file: file) } catch {
                    throw ConfigError(path: "services.\(service.name).policy", "\(error)")
                }
                if let named = read.policy.service, named != service.name {
                    throw ConfigError(path: "services.\(service.name).policy", "\(file) is for service \"\(named)\"")
                }
                services[index].policyText = read.text
            }
        }
    }
}
