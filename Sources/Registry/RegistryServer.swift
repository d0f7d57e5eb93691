// Registry: the Consul-compatible registry daemon: state by table (State/), SQLite and etcd stores
// (Store/), health checks (Health/), the HTTP API (API/) and the DNS interface (DNS/).

import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Telemetry
import TrellisCore
import TrellisHTTP

/// Settings of `trellis registry`.
public struct RegistryConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8500
    public var dataDirectory = "./data"
    public var nodeName = ProcessInfo.processInfo.hostName
    public var datacenter = "dc1"
    /// What the HTTP listeners accept: bodies up to 1 MiB (bigger ones get 413), header and connection limits.
    public var http = HTTPLimits(maxBodySize: 1 << 20)
    public var store = StoreChoice.sqlite
    /// Consul's `node_id`: the node's UUID; when nil it is kept from the store or generated once.
    public var nodeID: String?
    /// Consul's `node_meta`: extra metadata on the registry's own node.
    public var nodeMeta: [String: String] = [:]
    /// Consul's `enable_script_checks`: whether checks with `Args` may be registered and run.
    public var enableScriptChecks = false
    /// Consul's `default_intention_policy`; nil leaves it to the ACL default (allow).
    public var defaultIntentionPolicy: IntentionAction?
    /// Consul's `acl` block: enforcement, default policy, initial management token.
    public var acl = ACLSettings()
    /// Where the DNS interface listens (UDP and TCP); nil: no DNS.
    public var dnsAddress: (host: String, port: Int)?
    /// Consul's `addresses.http = "unix:///path"`: the API on a unix socket too.
    public var unixSocket: String?
    /// Consul's `ports.https` with `cert_file`/`key_file`: the API over TLS on the HTTP host too.
    public var https: (port: Int, certFile: String, keyFile: String)?
    /// Consul's `service`/`services` definitions of the config file, registered on the registry's node.
    public var services: [JSON] = []
    public var dns = DNSSettings()

    /// Where the catalog is kept.
    public enum StoreChoice: Sendable {
        /// One SQLite file in the data directory.
        case sqlite
        /// An etcd cluster shared by several registries, under a key prefix.
        case etcd(endpoints: [(host: String, port: Int)], prefix: String)

        /// The endpoints as `--etcd-endpoints` lists them (empty for SQLite).
        public var endpointList: String {
            guard case .etcd(let endpoints, _) = self else { return "" }
            return endpoints.map { HostPort.format($0.host, $0.port) }.joined(separator: ",")
        }
    }

    public init() {}

    public static func isUUID(_ text: String) -> Bool { ConsulAPI.isUUID(text) }

    /// Why node metadata is refused, in Consul's words (`validateMetaPair`), nil when it is valid.
    public static func nodeMetaProblem(_ meta: [String: String]) -> String? {
        if meta.count > 64 { return "Node metadata cannot contain more than 64 key/value pairs" }
        for (key, value) in meta.sorted(by: { $0.key < $1.key }) {
            if key.isEmpty { return "Key cannot be blank" }
            if !key.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == "-") }) {
                return "Key \"\(key)\" contains invalid characters"
            }
            if key.count > 128 { return "Key \"\(key)\" is too long (limit: 128 characters)" }
            if key.hasPrefix("consul-") { return "Key prefix 'consul-' is reserved for internal use" }
            if value.count > 512 { return "Value of \"\(key)\" is too long (limit: 512 characters)" }
        }
        return nil
    }
}

/// The registry daemon: durable catalog, health checker and Consul-compatible HTTP API.
public final class RegistryServer: Service {
    private let config: RegistryConfiguration
    private let logger: Logger
    private let onListening: @Sendable (Listener) -> Void
    private let logControl: LogControl
    private let reload: @Sendable () throws -> ReloadableSettings

    /// What the registry serves on, reported once bound (with port 0 the port actually bound).
    public enum Listener: Sendable {
        case http(String), https(String), unixSocket(String), dns(String)
    }

    /// `logControl` holds the level of `logger`'s handler (`ControlledLogHandler`); `reload` reads
    /// the settings `PUT /v1/agent/reload` applies.
    public init(config: RegistryConfiguration, logger: Logger, logControl: LogControl,
                reload: @escaping @Sendable () throws -> ReloadableSettings,
                onListening: @escaping @Sendable (Listener) -> Void = { _ in }) {
        self.config = config
        self.logger = logger
        self.logControl = logControl
        self.reload = reload
        self.onListening = onListening
    }

    public func run() async throws {
        OpenFileLimit.raiseToHardLimit()
        let metrics = RegistryMetrics()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let catalog: Catalog
        let closeStore: @Sendable () -> Void
        do {
            (catalog, closeStore) = try await openCatalog(group: group, metrics: metrics)
        } catch {
            try await group.shutdownGracefully()
            throw error
        }
        do {
            try await serve(catalog, group: group, metrics: metrics)
        } catch {
            closeStore()
            try? await group.shutdownGracefully()
            throw error
        }
        closeStore()
        try await group.shutdownGracefully()
    }

    /// Serves the API on `catalog` until graceful shutdown.
    private func serve(_ catalog: Catalog, group: MultiThreadedEventLoopGroup, metrics: RegistryMetrics) async throws {
        let advertised = config.host == "0.0.0.0" || config.host == "::" ? "127.0.0.1" : config.host

        let nodeID = config.nodeID ?? catalog.read { $0.node(config.nodeName)?.id } ?? UUID().uuidString.lowercased()
        let identity = AgentIdentity(nodeName: config.nodeName, nodeID: nodeID, datacenter: config.datacenter,
                                     address: advertised, httpPort: config.port, nodeMeta: config.nodeMeta,
                                     enableScriptChecks: config.enableScriptChecks,
                                     defaultIntentionPolicy: config.defaultIntentionPolicy)
        try await Self.registerSelf(identity, in: catalog)

        let checker = HealthChecker(catalog: catalog, node: identity.nodeName, loop: group.next(), logger: logger,
                                    runsScripts: config.enableScriptChecks) {
            metrics.recordProbe(type: $0, status: $1)
        }
        checker.start()
        let sessionExpiry = SessionExpiry(catalog: catalog, loop: group.next())
        let (leave, leaveRequested) = AsyncStream<Void>.makeStream()
        let api = ConsulAPI(catalog: catalog, identity: identity, checker: checker, metrics: metrics, logger: logger,
                            dataDirectory: config.dataDirectory, acl: config.acl, logControl: logControl, reload: reload,
                            onLeave: { leaveRequested.yield() })
        var servers: [HTTPServer] = []
        var tlsServer: HTTPServer?
        var dns: DNSServer?
        let server: HTTPServer
        do {
            try await api.registerConfigServices(config.services)
            try await api.initializeCA()
            try await api.initializeACL()
            server = try await HTTPServer.start(host: config.host, port: config.port, group: group,
                                                limits: config.http, responder: api, logger: logger)
            servers.append(server)
            if let path = config.unixSocket {
                servers.append(try await HTTPServer.start(.unixSocket(path: path), group: group, limits: config.http,
                                                          responder: api, logger: logger))
            }
            if let https = config.https {
                let tls = try Self.tlsContext(certFile: https.certFile, keyFile: https.keyFile)
                let secure = try await HTTPServer.start(.tcp(host: config.host, port: https.port), group: group,
                                                        limits: config.http, responder: api, logger: logger) { channel in
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                }
                servers.append(secure)
                tlsServer = secure
            }
            if let dnsAddress = config.dnsAddress {
                dns = try await DNSServer.start(host: dnsAddress.host, port: dnsAddress.port, catalog: catalog,
                                                datacenter: config.datacenter, settings: config.dns, acl: api.aclResolver,
                                                group: group, logger: logger)
            }
        } catch {
            for server in servers { await server.close() }
            checker.stop()
            sessionExpiry.stop()
            throw error
        }
        let address = "\(config.host):\(server.localAddress.port ?? config.port)"
        logger.info("registry listening", metadata: storeMetadata.merging(
            ["address": "\(address)", "node": "\(identity.nodeName)", "index": "\(catalog.read { $0.index })"]) { $1 })
        onListening(.http(address))
        if let path = config.unixSocket { onListening(.unixSocket(path)) }
        if let tlsServer { onListening(.https(HostPort.format(config.host, tlsServer.localAddress.port ?? 0))) }
        if let dns, let dnsAddress = config.dnsAddress { onListening(.dns(HostPort.format(dnsAddress.host, dns.port))) }
        SystemdNotifier.ready(status: "serving Consul API on \(address)")

        // Until SIGTERM/SIGINT or `PUT /v1/agent/leave`, whichever comes first.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await gracefulShutdown() }
            group.addTask { for await _ in leave { return } }
            await group.next()
            group.cancelAll()
        }

        SystemdNotifier.stopping()
        logger.info("registry shutting down")
        for server in servers { await server.close() }
        await dns?.close()
        checker.stop()
        sessionExpiry.stop()
    }

    /// The server side of TLS from PEM files; a file that cannot be read or parsed is named.
    static func tlsContext(certFile: String, keyFile: String) throws -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do { chain = try NIOSSLCertificate.fromPEMFile(certFile) } catch {
            throw ConfigError(description: "cert_file \(certFile): cannot read a PEM certificate (\(error))")
        }
        do { key = try NIOSSLPrivateKey(file: keyFile, format: .pem) } catch {
            throw ConfigError(description: "key_file \(keyFile): cannot read a PEM private key (\(error))")
        }
        let configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                     privateKey: .privateKey(key))
        return try NIOSSLContext(configuration: configuration)
    }

    /// The catalog on the configured store, and how to close that store.
    private func openCatalog(group: any EventLoopGroup, metrics: RegistryMetrics) async throws
        -> (Catalog, @Sendable () -> Void) {
        let onCommit: @Sendable (Double, Int) -> Void = { metrics.recordCommit(seconds: $0, batches: $1) }
        let store: any Store
        switch config.store {
        case .sqlite:
            try FileManager.default.createDirectory(atPath: config.dataDirectory, withIntermediateDirectories: true)
            store = try SQLiteStore(path: config.dataDirectory + "/registry.db", onCommit: onCommit)
        case .etcd(let endpoints, let prefix):
            store = EtcdStore(endpoints: endpoints, prefix: prefix, http: HTTPClient(group: group), logger: logger,
                              onCommit: onCommit)
        }
        return (try await Catalog(store: store), { store.close() })
    }

    /// Where the catalog is kept, for the start-up log line.
    private var storeMetadata: Logger.Metadata {
        switch config.store {
        case .sqlite: ["store": "sqlite", "data_dir": "\(config.dataDirectory)"]
        case .etcd(_, let prefix):
            ["store": "etcd", "etcd_prefix": "\(prefix)", "etcd_endpoints": "\(config.store.endpointList)"]
        }
    }

    /// The registry's own node, its `serfHealth` check and the `consul` service, as Consul shows them.
    static func registerSelf(_ identity: AgentIdentity, in catalog: Catalog) async throws {
        let address = identity.address
        let node = Node(id: identity.nodeID, name: identity.nodeName, address: address, datacenter: identity.datacenter,
                        taggedAddresses: ["lan": address, "lan_ipv4": address, "wan": address, "wan_ipv4": address],
                        meta: AgentIdentity.nodeMeta(identity.nodeMeta))
        var consul = ServiceInstance(node: identity.nodeName, id: "consul", name: "consul")
        consul.port = AgentIdentity.serverPort
        consul.meta = ["raft_version": "3", "serf_protocol_current": "2", "serf_protocol_max": "5",
                       "serf_protocol_min": "1", "version": AgentIdentity.consulVersion, "non_voter": "false",
                       "read_replica": "false"]
        var serf = HealthCheck(node: identity.nodeName, checkID: "serfHealth", name: "Serf Health Status")
        serf.status = .passing
        serf.output = "Agent alive and reachable"
        try await catalog.write { [node, consul, serf] (state: inout RegistryState) throws(CatalogError) in
            var node = node
            if let existing = state.node(node.name) { node.createIndex = existing.createIndex }
            state.putNode(node)
            state.putInstance(consul)
            state.putCheck(serf)
        }
    }
}
