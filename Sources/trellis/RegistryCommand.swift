import ArgumentParser
import Foundation
import Logging
import Registry
import ServiceLifecycle
import Telemetry
import TrellisCore
import UnixSignals
import Yams

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

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical. Default info.")
    var logLevel: Logger.Level?

    @Option(name: .long, help: "Log format: json, text, or auto (json unless stderr is a terminal).")
    var logFormat: LogSetup.Format = .auto

    @Option(name: .long, help: "YAML file with the same settings in snake_case (http_addr, data_dir, store, etcd_endpoints, etcd_prefix, node, node_id, node_meta, enable_script_checks, dns_addr, dns_config, addresses.http, ports.https, cert_file, key_file, datacenter, log_level, service, services); flags win.")
    var config: String?

    static let configKeys: Set<String> = ["http_addr", "data_dir", "store", "etcd_endpoints", "etcd_prefix", "node", "node_id",
                                          "node_meta", "enable_script_checks", "dns_addr", "dns_config", "addresses", "ports",
                                          "cert_file", "key_file", "datacenter", "log_level", "service", "services"]

    func run() async throws {
        let file = try config.map { try DaemonConfigFile(path: $0, allowed: Self.configKeys) }
        var settings = RegistryConfiguration()
        let address = httpAddr ?? file?["http_addr"] ?? "127.0.0.1:8500"
        guard let (host, port) = HostPort.parse(address) else {
            throw ValidationError("http_addr must be HOST:PORT, got \"\(address)\"")
        }
        settings.host = host
        settings.port = port
        settings.dataDirectory = dataDir ?? file?["data_dir"] ?? "./data"
        settings.store = try Self.storeChoice(store ?? file?["store"] ?? "sqlite",
                                              endpoints: etcdEndpoints ?? file?["etcd_endpoints"] ?? "http://127.0.0.1:2379",
                                              prefix: etcdPrefix ?? file?["etcd_prefix"] ?? "trellis/registry/")
        settings.datacenter = datacenter ?? file?["datacenter"] ?? "dc1"
        if let name = node ?? file?["node"] { settings.nodeName = name }
        if let id = nodeID ?? file?["node_id"] {
            guard RegistryConfiguration.isUUID(id) else {
                throw ValidationError("node_id must be a UUID such as 8f246b77-f3e1-ff88-5b48-8ec93abf3e05, got \"\(id)\"")
            }
            settings.nodeID = id.lowercased()
        }
        let reloadable = try Self.reloadable(file, nodeMeta: nodeMeta, logLevel: logLevel)
        settings.nodeMeta = reloadable.nodeMeta
        settings.services = reloadable.services
        settings.enableScriptChecks = try enableScriptChecks || (file?.bool("enable_script_checks") ?? false)
        if let dns = dnsAddr ?? file?["dns_addr"] {
            guard let (host, port) = HostPort.parse(dns) else { throw ValidationError("dns_addr must be HOST:PORT, got \"\(dns)\"") }
            settings.dnsAddress = (host, port)
        }
        if let dnsConfig = try file?.raw("dns_config") { settings.dns = try Self.dnsSettings(dnsConfig) }
        let addresses = try file?.map("addresses") ?? [:]
        if let unknown = addresses.keys.first(where: { $0 != "http" }) {
            throw ValidationError("addresses: unknown setting \"\(unknown)\" (known: http)")
        }
        if let socket = httpSocket ?? addresses["http"] {
            guard socket.hasPrefix("/") || socket.hasPrefix("unix://") else {
                throw ValidationError("addresses.http must be unix:///PATH (the TCP address is http_addr), got \"\(socket)\"")
            }
            settings.unixSocket = socket.hasPrefix("unix://") ? String(socket.dropFirst(7)) : socket
        }
        let ports = try file?.map("ports") ?? [:]
        if let unknown = ports.keys.first(where: { $0 != "https" }) {
            throw ValidationError("ports: unknown setting \"\(unknown)\" (known: https)")
        }
        let httpsText = httpsPort.map(String.init) ?? ports["https"]
        if let httpsText, httpsText != "-1" {
            guard let port = Int(httpsText), (0...65535).contains(port) else {
                throw ValidationError("ports.https must be a port number, got \"\(httpsText)\"")
            }
            guard let cert = certFile ?? file?["cert_file"], let key = keyFile ?? file?["key_file"] else {
                throw ValidationError("ports.https needs cert_file and key_file")
            }
            settings.https = (port, cert, key)
        }
        let config = settings
        let logControl = LogControl(level: reloadable.logLevel)
        let logger = LogSetup.make(label: "trellis.registry", level: reloadable.logLevel, format: logFormat, control: logControl)
        let (path, metaFlags, levelFlag) = (self.config, nodeMeta, logLevel)
        let reload: @Sendable () throws -> ReloadableSettings = {
            try Self.reloadable(path.map { try DaemonConfigFile(path: $0, allowed: Self.configKeys) }, nodeMeta: metaFlags, logLevel: levelFlag)
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
    static func reloadable(_ file: DaemonConfigFile?, nodeMeta flags: [String], logLevel flag: Logger.Level?) throws -> ReloadableSettings {
        var meta = try file?.map("node_meta") ?? [:]
        for pair in flags {
            guard let colon = pair.firstIndex(of: ":") else { throw ValidationError("--node-meta must be KEY:VALUE, got \"\(pair)\"") }
            meta[String(pair[..<colon])] = String(pair[pair.index(after: colon)...])
        }
        if let problem = RegistryConfiguration.nodeMetaProblem(meta) { throw ValidationError("node_meta: \(problem)") }
        guard let level = flag ?? (file?["log_level"].map { Logger.Level(rawValue: $0) } ?? .info) else {
            throw ValidationError("log_level must be one of trace, debug, info, notice, warning, error, critical")
        }
        var services: [JSON] = []
        if let one = try file?.raw("service") { services.append(Self.json(one)) }
        if let many = try file?.raw("services") {
            guard let list = many as? [Any] else { throw ValidationError("services must be a list of service definitions") }
            services += list.map(Self.json)
        }
        return ReloadableSettings(logLevel: level, nodeMeta: meta, services: services)
    }

    /// A value of the YAML (or JSON) config file as JSON, for the service definitions the API reads.
    static func json(_ value: Any) -> JSON {
        switch value {
        case let flag as Bool: .bool(flag)
        case let number as Int: .int(Int64(number))
        case let number as Double: .double(number)
        case let text as String: .string(text)
        case let list as [Any]: .array(list.map(json))
        case let map as [String: Any]: .object(JSONObject(map.sorted { $0.key < $1.key }.map { (key: $0.key, value: json($0.value)) }))
        default: .null
        }
    }

    /// Consul's `dns_config`: `node_ttl`, `service_ttl` (a map by service, `*` for the rest),
    /// `only_passing`, `udp_answer_limit`, `a_record_limit`, `enable_truncate`, `soa.min_ttl`.
    static func dnsSettings(_ value: Any) throws -> DNSSettings {
        guard let map = value as? [String: Any] else { throw ValidationError("dns_config must be a map") }
        var settings = DNSSettings()
        func duration(_ key: String, _ raw: Any) throws -> Duration {
            guard let nanos = GoDuration.parseNanoseconds("\(raw)") else {
                throw ValidationError("dns_config.\(key): invalid duration \"\(raw)\" (use Go forms such as 30s)")
            }
            return .nanoseconds(nanos)
        }
        func number(_ key: String, _ raw: Any) throws -> Int {
            guard let value = Int("\(raw)"), value >= 0 else { throw ValidationError("dns_config.\(key) must be a non-negative integer") }
            return value
        }
        func flag(_ key: String, _ raw: Any) throws -> Bool {
            if let value = raw as? Bool { return value }
            throw ValidationError("dns_config.\(key) must be true or false")
        }
        for (key, raw) in map {
            switch key {
            case "node_ttl": settings.nodeTTL = try duration(key, raw)
            case "service_ttl":
                guard let ttls = raw as? [String: Any] else { throw ValidationError("dns_config.service_ttl must map service names to durations") }
                for (service, ttl) in ttls { settings.serviceTTL[service] = try duration("service_ttl.\(service)", ttl) }
            case "only_passing": settings.onlyPassing = try flag(key, raw)
            case "enable_truncate": settings.enableTruncate = try flag(key, raw)
            case "udp_answer_limit": settings.udpAnswerLimit = try number(key, raw)
            case "a_record_limit": settings.aRecordLimit = try number(key, raw)
            case "soa":
                guard let soa = raw as? [String: Any] else { throw ValidationError("dns_config.soa must be a map") }
                for (soaKey, soaValue) in soa {
                    guard soaKey == "min_ttl" else { throw ValidationError("dns_config.soa: unknown setting \"\(soaKey)\" (known: min_ttl)") }
                    settings.soaMinTTL = UInt32(clamping: try number("soa.min_ttl", soaValue))
                }
            default:
                throw ValidationError("dns_config: unknown setting \"\(key)\" (known: a_record_limit, enable_truncate, node_ttl, only_passing, service_ttl, soa, udp_answer_limit)")
            }
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

/// A daemon's `--config` YAML file: a flat map of settings, unknown keys refused by name.
struct DaemonConfigFile {
    private let path: String
    private let values: [String: String]
    private let nested: [String: Any]

    init(path: String, allowed: Set<String>) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read config file \(path)") }
        let parsed: Any?
        do { parsed = try Yams.load(yaml: String(decoding: data, as: UTF8.self)) } catch {
            throw ValidationError("\(path): \(error)")
        }
        guard let map = parsed as? [String: Any] else { throw ValidationError("\(path): expected a map of settings") }
        var values: [String: String] = [:]
        var nested: [String: Any] = [:]
        for (key, value) in map {
            guard allowed.contains(key) else {
                throw ValidationError("\(path): unknown setting \"\(key)\" (known: \(allowed.sorted().joined(separator: ", ")))")
            }
            if value is [String: Any] || value is [Any] {
                nested[key] = value
            } else {
                values[key] = "\(value)"
            }
        }
        self.path = path
        self.values = values
        self.nested = nested
    }

    /// A map or list setting as parsed, for settings with their own structure (`dns_config`, `services`).
    func raw(_ key: String) throws -> Any? {
        if values[key] != nil { throw ValidationError("\(path): \(key) must be a map or a list") }
        return nested[key]
    }

    subscript(_ key: String) -> String? { values[key] }

    /// A setting that is a map of strings (such as `node_meta`).
    func map(_ key: String) throws -> [String: String]? {
        if values[key] != nil { throw ValidationError("\(path): \(key) must be a map of KEY: VALUE") }
        return (nested[key] as? [String: Any])?.mapValues { "\($0)" }
    }

    /// A boolean setting (`true`/`false`).
    func bool(_ key: String) throws -> Bool? {
        guard let text = values[key] else {
            if nested[key] != nil { throw ValidationError("\(path): \(key) must be true or false") }
            return nil
        }
        switch text.lowercased() {
        case "true", "1": return true
        case "false", "0": return false
        default: throw ValidationError("\(path): \(key) must be true or false, got \"\(text)\"")
        }
    }
}
