import Foundation
import Logging
import NIOCore
import Telemetry
import TrellisCore
import TrellisHTTP

/// `/v1/agent/monitor` and `/v1/agent/reload`: the registry's log as it happens, and its
/// configuration file read again (log level, node metadata, service definitions).
extension ConsulAPI {
    /// Consul's log levels (hclog), as `?loglevel=` names them, case-insensitively.
    static let monitorLevels: [String: Logger.Level] = [
        "trace": .trace, "debug": .debug, "info": .info, "warn": .warning, "err": .error, "error": .error,
    ]

    /// Streams log lines at `?loglevel=` (default INFO) until the client goes away, in hclog's text
    /// form or, with `?logjson`, as JSON objects, as Consul's monitor does.
    func agentMonitor(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .agent, identity.nodeName, .read) { return refused }
        let query = context.request.query
        let name = (query["loglevel"] ?? "").isEmpty ? "INFO" : query["loglevel"]!
        guard let level = Self.monitorLevels[name.lowercased()] else { return badRequest("Unknown log level: \(name)", context) }
        let logs = logControl
        let json = query.has("logjson")
        let stream = HTTPBodyStream()
        let token = logs.subscribe(level: level) { record in
            stream.write(ByteBuffer(bytes: json ? Self.jsonLine(record) : Self.textLine(record)))
        }
        stream.onFinish { logs.unsubscribe(token) }
        // Its first line, so that a client sees the stream is live (Consul's agent logs all the time).
        logger.info("log monitor attached", metadata: ["loglevel": "\(name.uppercased())"])
        var response = HTTPResponse(status: .ok)
        response.headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        response.stream = stream
        return immediate(response, context)
    }

    /// `PUT /v1/agent/reload`: reads the `--config` file again and applies what can change while
    /// running (`log_level`, `node_meta`, the `service`/`services` definitions); a file that no
    /// longer parses, or defines a service that does not validate, changes nothing.
    func agentReload(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .agent, identity.nodeName, .write) { return refused }
        let settings: ReloadableSettings
        let services: [AgentRegistration]
        do {
            settings = try reload()
            services = try configServiceRegistrations(settings.services)
        } catch {
            return immediate(.text(.internalServerError, "Failed reloading config: \(Self.reason(error))"), context)
        }
        logControl.level = settings.logLevel
        let node = identity.nodeName
        let meta = AgentIdentity.nodeMeta(settings.nodeMeta)
        logger.notice("configuration reloaded", metadata: ["log_level": "\(settings.logLevel)", "services": "\(services.count)"])
        return write(context, { (state: inout RegistryState) throws(CatalogError) -> [HealthCheck] in
            if var own = state.node(node) {
                own.meta = meta
                state.putNode(own)
            }
            return try Self.replaceConfigServices(services, node: node, in: &state)
        }, render: { [checker] stored in
            stored.forEach(checker.checkRegistered)
            return HTTPResponse(status: .ok)
        })
    }

    /// Registers the config file's services at start.
    public func registerConfigServices(_ definitions: [JSON]) async throws {
        let services = try configServiceRegistrations(definitions)
        let node = identity.nodeName
        let stored = try await catalog.write { (state: inout RegistryState) throws(CatalogError) -> [HealthCheck] in
            try Self.replaceConfigServices(services, node: node, in: &state)
        }
        stored.forEach(checker.checkRegistered)
    }

    /// The config file's service definitions, validated as agent registrations.
    private func configServiceRegistrations(_ definitions: [JSON]) throws -> [AgentRegistration] {
        var registrations: [AgentRegistration] = []
        for (i, definition) in definitions.enumerated() {
            do {
                registrations += try agentRegistrations(try FieldReader(definition, context: "service"))
            } catch {
                throw ConfigError(description: "service definition \(i + 1): \(Self.reason(error))")
            }
        }
        return registrations
    }

    /// Registers `services` and removes the ones an earlier version of the file defined and this one does not.
    private static func replaceConfigServices(_ services: [AgentRegistration], node: String,
                                              in state: inout RegistryState) throws(CatalogError) -> [HealthCheck] {
        let ids = Set(services.map(\.instance.id))
        for stale in state.configServiceIDs.subtracting(ids) {
            state.removeInstance(InstanceKey(node: node, id: stale))
        }
        let stored = try AgentRegistration.apply(services, node: node, replacingChecks: true, to: &state)
        state.setConfigServiceIDs(ids)
        return stored
    }

    private static func reason(_ error: any Error) -> String {
        switch error {
        case let error as DecodeError: error.message
        case AgentRegistration.Refusal.invalid(let message): message
        default: "\(error)"
        }
    }

    private static let timestamp = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// hclog's name of a level: `trace`, `debug`, `info`, `warn`, `error`.
    private static func hclogName(_ level: Logger.Level) -> String {
        switch level {
        case .trace: "trace"
        case .debug: "debug"
        case .info, .notice: "info"
        case .warning: "warn"
        case .error, .critical: "error"
        }
    }

    /// hclog's line: `2026-12-02T00:10:00.123Z [INFO]  trellis.registry: message: key=value`.
    static func textLine(_ record: LogControl.Record) -> [UInt8] {
        let level = "[\(hclogName(record.level).uppercased())]".padding(toLength: 7, withPad: " ", startingAt: 0)
        var line = "\(timestamp.format(record.date)) \(level) \(record.label): \(record.message)"
        if !record.metadata.isEmpty { line += ":" + record.metadata.map { " \($0.key)=\($0.value)" }.joined() }
        return Array((line + "\n").utf8)
    }

    /// hclog's JSON line: `@level`, `@message`, `@module`, `@timestamp`, then the metadata.
    static func jsonLine(_ record: LogControl.Record) -> [UInt8] {
        var object = JSONObject([
            ("@level", .string(hclogName(record.level))), ("@message", .string(record.message)),
            ("@module", .string(record.label)), ("@timestamp", .string(timestamp.format(record.date))),
        ])
        for (key, value) in record.metadata { object.append(key, .string(value)) }
        var bytes = JSON.object(object).serialized()
        bytes.append(0x0A)
        return bytes
    }
}

/// What `PUT /v1/agent/reload` applies from the configuration file.
public struct ReloadableSettings: Sendable {
    public var logLevel: Logger.Level
    public var nodeMeta: [String: String]
    /// Consul's `service`/`services` definitions: agent registrations, as the API takes them.
    public var services: [JSON]

    public init(logLevel: Logger.Level, nodeMeta: [String: String], services: [JSON]) {
        self.logLevel = logLevel
        self.nodeMeta = nodeMeta
        self.services = services
    }
}
