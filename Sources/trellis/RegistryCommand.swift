import ArgumentParser
import Foundation
import Logging
import NIOCore
import Registry
import ServiceLifecycle
import Telemetry
import TrellisCore
import TrellisHTTP
import UnixSignals

struct RegistryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry",
        abstract: "Run the registry: Consul-compatible catalog, health checks and API, durable on SQLite or etcd.")

    @Option(name: .long, help: "Where the HTTP API listens (HOST:PORT; port 0 picks a free one). Default 127.0.0.1:8500.")
    var httpAddr: String?

    @Option(name: .long, help: "Directory of the SQLite store. Default ./data.")
    var dataDir: String?

    @Option(name: .long, help: "Where the catalog is kept: sqlite (one file in the data directory) or etcd (shared by several registries). Default sqlite.")
    var store: String?

    @Option(name: .long, help: "Client URLs of the etcd cluster with --store etcd, comma-separated (http://HOST:PORT or HOST:PORT). Default http://127.0.0.1:2379.")
    var etcdEndpoints: String?

    @Option(name: .long, help: "Key prefix of this registry cluster in etcd. Default trellis/registry/.")
    var etcdPrefix: String?

    @Option(name: .long, help: "Node name of this registry (default: host name).")
    var node: String?

    @Option(name: .long, help: "Datacenter name. Default dc1.")
    var datacenter: String?

    @Option(name: .long, help: "UUID of the registry's node (Consul's node_id). Default: kept from the store, else generated.")
    var nodeID: String?

    @Option(name: .long, help: "Metadata of the registry's node as KEY:VALUE (Consul's -node-meta); repeatable.")
    var nodeMeta: [String] = []

    @Flag(name: .long, help: "Allow checks that run a command (Args), as Consul's enable_script_checks. Off by default.")
    var enableScriptChecks = false

    @Option(name: .long, help: "allow or deny: what a connection that no intention matches gets (Consul's default_intention_policy). Default allow.")
    var defaultIntentionPolicy: String?

    @Flag(name: .long, help: "Enforce ACLs: every request needs a token whose policies allow it (Consul's acl.enabled).")
    var aclEnabled = false

    @Option(name: .long, help: "allow or deny: what a token may do where none of its rules apply (Consul's acl.default_policy). Default allow.")
    var aclDefaultPolicy: String?

    @Option(name: .long, help: "Secret of a management token created on start (Consul's acl.tokens.initial_management; default: $TRELLIS_ACL_INITIAL_MANAGEMENT_TOKEN).")
    var aclInitialManagementToken: String?

    @Option(name: .long, help: "File holding the secret of the initial management token.")
    var aclInitialManagementTokenFile: String?

    @Option(name: .long, help: "Token of requests that carry none, instead of the anonymous token (Consul's acl.tokens.default).")
    var aclDefaultToken: String?

    @Option(name: .long, help: "Serve Consul's DNS interface on HOST:PORT, UDP and TCP (port 0 picks a free one). Off unless given.")
    var dnsAddr: String?

    @Option(name: .long, help: "Serve the API on this unix socket too (Consul's addresses.http = \"unix://PATH\").")
    var httpSocket: String?

    @Option(name: .long, help: "Serve the API over TLS on this port of the HTTP host too (Consul's -https-port); needs --cert-file and --key-file.")
    var httpsPort: Int?

    @Option(name: .long, help: "PEM certificate (chain) for --https-port (Consul's cert_file).")
    var certFile: String?

    @Option(name: .long, help: "PEM private key for --https-port (Consul's key_file).")
    var keyFile: String?

    @Option(name: .long, help: "How long a client may take to send a complete request head before it gets 408 and is closed (Go duration). Default 10s.")
    var requestHeadersTimeout: String?

    @Option(name: .long, help: "How long a client may take to send a request's body once its head is complete, before it gets 408 and is closed (Go duration). Default 30s.")
    var requestBodyTimeout: String?

    @Option(name: .long, help: "How long a keep-alive connection may wait for its next request before it is closed (Go duration). Default 60s.")
    var idleTimeout: String?

    @Option(name: .long, help: "Open connections one client address may hold; more get 429 (Consul's limits.http_max_conns_per_client; 0: no limit). Default 200.")
    var httpMaxConnsPerClient: Int?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical. Default info.")
    var logLevel: Logger.Level?

    @Option(name: .long, help: "Log format: json, text, or auto (json unless stderr is a terminal).")
    var logFormat: LogSetup.Format = .auto

    @Option(name: .long, help: "YAML file with the same settings in snake_case (http_addr, data_dir, store, etcd_endpoints, etcd_prefix, node, node_id, node_meta, enable_script_checks, default_intention_policy, acl.enabled, acl.default_policy, acl.tokens.initial_management, acl.tokens.default, dns_addr, dns_config, addresses.http, ports.https, cert_file, key_file, datacenter, log_level, service, services, request_headers_timeout, request_body_timeout, idle_timeout) and Consul's limits.http_max_conns_per_client and http_config.max_header_bytes; flags win.")
    var config: String?

    static let configKeys: Set<String> = ["http_addr", "data_dir", "store", "etcd_endpoints", "etcd_prefix", "node", "node_id",
                                          "node_meta", "enable_script_checks", "default_intention_policy", "dns_addr", "dns_config",
                                          "addresses", "ports", "cert_file", "key_file", "datacenter", "log_level", "service", "services",
                                          "request_headers_timeout", "request_body_timeout", "idle_timeout", "limits",
                                          "http_config", "acl"]

    /// `--acl-*` and the config file's `acl` block; the initial management token from the flag,
    /// its file, or `TRELLIS_ACL_INITIAL_MANAGEMENT_TOKEN`.
    private func aclSettings(_ file: ConfigReader?) throws -> ACLSettings {
        let block = try file?.map("acl", allowed: ["enabled", "default_policy", "tokens"])
        var acl = ACLSettings()
        acl.enabled = try aclEnabled || (block?.bool("enabled") ?? false)
        if let policy = try aclDefaultPolicy ?? block?.string("default_policy") {
            guard policy == "allow" || policy == "deny" else { throw ValidationError("acl.default_policy must be allow or deny, got \"\(policy)\"") }
            acl.defaultAllows = policy == "allow"
        }
        let tokens = try block?.map("tokens", allowed: ["initial_management", "default"])
        acl.defaultToken = try aclDefaultToken ?? tokens?.string("default")
        var token = try aclInitialManagementToken ?? tokens?.string("initial_management")
        if token == nil, let path = aclInitialManagementTokenFile {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ValidationError("cannot read the initial management token file \(path)")
            }
            token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        acl.initialManagementToken = token ?? ProcessInfo.processInfo.environment["TRELLIS_ACL_INITIAL_MANAGEMENT_TOKEN"]
        if acl.initialManagementToken?.isEmpty == true { acl.initialManagementToken = nil }
        return acl
    }

    func run() async throws {
        let file = try config.map { try ConfigReader(file: $0, allowed: Self.configKeys) }
        var settings = RegistryConfiguration()
        let address = try httpAddr ?? file?.string("http_addr") ?? "127.0.0.1:8500"
        guard let (host, port) = HostPort.parse(address) else {
            throw ValidationError("http_addr must be HOST:PORT, got \"\(address)\"")
        }
        settings.host = host
        settings.port = port
        settings.dataDirectory = try dataDir ?? file?.string("data_dir") ?? "./data"
        settings.store = try Self.storeChoice(try store ?? file?.string("store") ?? "sqlite",
                                              endpoints: try etcdEndpoints ?? file?.string("etcd_endpoints") ?? "http://127.0.0.1:2379",
                                              prefix: try etcdPrefix ?? file?.string("etcd_prefix") ?? "trellis/registry/")
        settings.datacenter = try datacenter ?? file?.string("datacenter") ?? "dc1"
        if let name = try node ?? file?.string("node") { settings.nodeName = name }
        if let id = try nodeID ?? file?.string("node_id") {
            guard RegistryConfiguration.isUUID(id) else {
                throw ValidationError("node_id must be a UUID such as 8f246b77-f3e1-ff88-5b48-8ec93abf3e05, got \"\(id)\"")
            }
            settings.nodeID = id.lowercased()
        }
        let reloadable = try Self.reloadable(file, nodeMeta: nodeMeta, logLevel: logLevel)
        settings.nodeMeta = reloadable.nodeMeta
        settings.services = reloadable.services
        settings.enableScriptChecks = try enableScriptChecks || (file?.bool("enable_script_checks") ?? false)
        if let policy = try defaultIntentionPolicy ?? file?.string("default_intention_policy") {
            guard let action = IntentionAction(rawValue: policy) else {
                throw ValidationError("default_intention_policy must be allow or deny, got \"\(policy)\"")
            }
            settings.defaultIntentionPolicy = action
        }
        settings.acl = try aclSettings(file)
        if let dns = try dnsAddr ?? file?.string("dns_addr") {
            guard let (host, port) = HostPort.parse(dns) else { throw ValidationError("dns_addr must be HOST:PORT, got \"\(dns)\"") }
            settings.dnsAddress = (host, port)
        }
        if let dnsConfig = file?["dns_config"] { settings.dns = try Self.dnsSettings(dnsConfig) }
        let addresses = try file?.map("addresses", allowed: ["http"])
        if let socket = try httpSocket ?? addresses?.string("http") {
            guard socket.hasPrefix("/") || socket.hasPrefix("unix://") else {
                throw ValidationError("addresses.http must be unix:///PATH (the TCP address is http_addr), got \"\(socket)\"")
            }
            settings.unixSocket = socket.hasPrefix("unix://") ? String(socket.dropFirst(7)) : socket
        }
        let ports = try file?.map("ports", allowed: ["https"])
        let httpsText = try httpsPort.map(String.init) ?? ports?.string("https")
        if let httpsText, httpsText != "-1" {
            guard let port = Int(httpsText), (0...65535).contains(port) else {
                throw ValidationError("ports.https must be a port number, got \"\(httpsText)\"")
            }
            guard let cert = try certFile ?? file?.string("cert_file"), let key = try keyFile ?? file?.string("key_file") else {
                throw ValidationError("ports.https needs cert_file and key_file")
            }
            settings.https = (port, cert, key)
        }
        settings.http = try Self.httpLimits(settings.http, file, requestHeadersTimeout: requestHeadersTimeout,
                                            requestBodyTimeout: requestBodyTimeout, idleTimeout: idleTimeout,
                                            maxConnsPerClient: httpMaxConnsPerClient)
        let config = settings
        let logControl = LogControl(level: reloadable.logLevel)
        let logger = LogSetup.make(label: "trellis.registry", level: reloadable.logLevel, format: logFormat, control: logControl)
        let (path, metaFlags, levelFlag) = (self.config, nodeMeta, logLevel)
        let reload: @Sendable () throws -> ReloadableSettings = {
            try Self.reloadable(path.map { try ConfigReader(file: $0, allowed: Self.configKeys) }, nodeMeta: metaFlags, logLevel: levelFlag)
        }
        let storage = switch config.store {
        case .sqlite: "data in \(config.dataDirectory)"
        case .etcd(_, let prefix): "data in etcd \(config.store.endpointList) under \(prefix)"
        }
        let server = RegistryServer(config: config, logger: logger, logControl: logControl, reload: reload) { listener in
            let line = switch listener {
            case .http(let address): "trellis registry listening on http://\(address) (\(storage))"
            case .https(let address): "trellis registry listening on https://\(address)"
            case .unixSocket(let path): "trellis registry listening on unix://\(path)"
            case .dns(let address): "trellis registry serving DNS on \(address) (udp and tcp)"
            }
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        }
        try await LogSetup.runUntilSignalled(server, logger: logger)
    }
}

extension RegistryCommand {
    /// `defaults` with what the flags and the file set: the timeouts, and Consul's
    /// `limits.http_max_conns_per_client` and `http_config.max_header_bytes`.
    static func httpLimits(_ defaults: HTTPLimits, _ file: ConfigReader?, requestHeadersTimeout: String?, requestBodyTimeout: String?,
                           idleTimeout: String?, maxConnsPerClient: Int?) throws -> HTTPLimits {
        var limits = defaults
        func timeout(_ name: String, _ flag: String?) throws -> TimeAmount? {
            guard let text = try flag ?? file?.string(name) else { return nil }
            guard let nanos = GoDuration.parseNanoseconds(text), nanos > 0 else {
                throw ValidationError("\(name) must be a positive duration such as 10s, got \"\(text)\"")
            }
            return .nanoseconds(nanos)
        }
        if let value = try timeout("request_headers_timeout", requestHeadersTimeout) { limits.requestHeadersTimeout = value }
        if let value = try timeout("request_body_timeout", requestBodyTimeout) { limits.requestBodyTimeout = value }
        if let value = try timeout("idle_timeout", idleTimeout) { limits.idleTimeout = value }
        if let perClient = try maxConnsPerClient ?? file?.map("limits", allowed: ["http_max_conns_per_client"])?.int("http_max_conns_per_client") {
            guard perClient >= 0 else { throw ValidationError("http_max_conns_per_client must be 0 (no limit) or more, got \(perClient)") }
            limits.maxConnectionsPerClient = perClient
        }
        if let headerBytes = try file?.map("http_config", allowed: ["max_header_bytes"])?.int("max_header_bytes"), headerBytes > 0 {
            limits.maxHeaderBytes = headerBytes
        }
        return limits
    }

    /// The store named by `--store`, with its etcd settings checked.
    static func storeChoice(_ name: String, endpoints: String, prefix: String) throws -> RegistryConfiguration.StoreChoice {
        switch name {
        case "sqlite":
            return .sqlite
        case "etcd":
            let parsed = try endpoints.split(separator: ",").map { text in
                let address = text.trimmingCharacters(in: .whitespaces)
                if address.hasPrefix("https://") {
                    throw ValidationError("etcd endpoint \(address): https is not supported; use etcd's plain http client URL")
                }
                guard let (host, port) = HostPort.parseHTTP(address), port > 0 else {
                    throw ValidationError("etcd endpoint must be http://HOST:PORT or HOST:PORT, got \"\(text)\"")
                }
                return (host: host, port: port)
            }
            guard !parsed.isEmpty else { throw ValidationError("--etcd-endpoints names no endpoint") }
            guard !prefix.isEmpty else { throw ValidationError("--etcd-prefix must not be empty") }
            return .etcd(endpoints: parsed, prefix: prefix)
        default:
            throw ValidationError("store must be sqlite or etcd, got \"\(name)\"")
        }
    }
}

extension RegistryCommand {
    /// The settings that `PUT /v1/agent/reload` applies, from the file and the flags (which win).
    static func reloadable(_ file: ConfigReader?, nodeMeta flags: [String], logLevel flag: Logger.Level?) throws -> ReloadableSettings {
        var meta: [String: String] = [:]
        for (key, value) in try file?.stringMap("node_meta") ?? [] { meta[key] = value }
        for pair in flags {
            guard let colon = pair.firstIndex(of: ":") else { throw ValidationError("--node-meta must be KEY:VALUE, got \"\(pair)\"") }
            meta[String(pair[..<colon])] = String(pair[pair.index(after: colon)...])
        }
        if let problem = RegistryConfiguration.nodeMetaProblem(meta) { throw ValidationError("node_meta: \(problem)") }
        guard let level = try flag ?? (file?.string("log_level").map { Logger.Level(rawValue: $0) } ?? .info) else {
            throw ValidationError("log_level must be one of trace, debug, info, notice, warning, error, critical")
        }
        var services: [JSON] = []
        if let one = file?["service"] { services.append(one.json()) }
        services += try file?["services"]?.items().map { $0.json() } ?? []
        return ReloadableSettings(logLevel: level, nodeMeta: meta, services: services)
    }

    /// Consul's `dns_config`: `node_ttl`, `service_ttl` (a map by service, `*` for the rest),
    /// `only_passing`, `udp_answer_limit`, `a_record_limit`, `enable_truncate`, `soa.min_ttl`.
    static func dnsSettings(_ value: ConfigValue) throws -> DNSSettings {
        let config = try value.mapping(allowed: ["node_ttl", "service_ttl", "only_passing", "udp_answer_limit", "a_record_limit",
                                                 "enable_truncate", "soa"])
        var settings = DNSSettings()
        if let ttl = try config.duration("node_ttl", allowsZero: true) { settings.nodeTTL = ttl }
        for (service, ttl) in try config.map("service_ttl")?.entries ?? [] {
            settings.serviceTTL[service] = try ttl.duration(allowsZero: true)
        }
        if let flag = try config.bool("only_passing") { settings.onlyPassing = flag }
        if let flag = try config.bool("enable_truncate") { settings.enableTruncate = flag }
        if let limit = try config.int("udp_answer_limit") { settings.udpAnswerLimit = limit }
        if let limit = try config.int("a_record_limit") { settings.aRecordLimit = limit }
        if let soa = try config.map("soa", allowed: ["min_ttl"]), let minTTL = try soa.int("min_ttl") {
            settings.soaMinTTL = UInt32(clamping: minTTL)
        }
        return settings
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

enum LogSetup {
    enum Format: String, ExpressibleByArgument, CaseIterable { case auto, json, text }

    /// Runs a daemon until SIGTERM or SIGINT (or another of `signals`) starts its graceful shutdown,
    /// or until it ends by itself (the registry after `PUT /v1/agent/leave`).
    static func runUntilSignalled(_ service: some Service, logger: Logger, signals: [UnixSignal] = [.sigterm, .sigint]) async throws {
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: signals, logger: logger))
        try await group.run()
    }

    /// A stderr logger at `level`, so stdout stays for the command's own output; with `control`,
    /// its level can change while it runs and its lines can be streamed.
    static func make(label: String, level: Logger.Level, format: Format, control: LogControl? = nil) -> Logger {
        let json = format == .json || (format == .auto && isatty(STDERR_FILENO) == 0)
        var logger = Logger(label: label) { label -> any LogHandler in
            let handler: any LogHandler = json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            return control.map { ControlledLogHandler(handler, label: label, control: $0) } ?? handler
        }
        if control == nil { logger.logLevel = level }
        return logger
    }
}
