import Foundation
import Logging
import NIOCore
import Telemetry
import TrellisCore
import TrellisHTTP

/// `/v1/agent/monitor` and `/v1/agent/reload`: the registry's log as it happens, and its
/// configuration file read again.
extension ConsulAPI {
    /// Consul's log levels (hclog), as `?loglevel=` names them, case-insensitively.
    static let monitorLevels: [String: Logger.Level] = [
        "trace": .trace, "debug": .debug, "info": .info, "warn": .warning, "err": .error, "error": .error,
    ]

    /// Streams log lines at `?loglevel=` (default INFO) until the client goes away, in hclog's text
    /// form or, with `?logjson`, as JSON objects, as Consul's monitor does.
    func agentMonitor(_ context: Context) -> EventLoopFuture<HTTPResponse> {
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
    /// running (`log_level`, `node_meta`); a file that no longer parses changes nothing.
    func agentReload(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let settings: ReloadableSettings
        do { settings = try reload() } catch {
            return immediate(.text(.internalServerError, "Failed reloading config: \(error)"), context)
        }
        logControl.level = settings.logLevel
        let node = identity.nodeName
        let meta = settings.nodeMeta.merging(["consul-network-segment": "", "consul-version": AgentIdentity.consulVersion]) { $1 }
        logger.notice("configuration reloaded", metadata: ["log_level": "\(settings.logLevel)"])
        return write(context, { (state: inout CatalogState) throws(CatalogError) in
            guard var own = state.node(node) else { return }
            own.meta = meta
            state.putNode(own)
        }, render: { _ in HTTPResponse(status: .ok) })
    }

    private static let timestamp = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// hclog's line: `2026-12-02T00:10:00.123Z [INFO]  trellis.registry: message: key=value`.
    static func textLine(_ record: LogControl.Record) -> [UInt8] {
        let level = switch record.level {
        case .trace: "[TRACE]"
        case .debug: "[DEBUG]"
        case .info, .notice: "[INFO] "
        case .warning: "[WARN] "
        case .error, .critical: "[ERROR]"
        }
        var line = "\(timestamp.format(record.date)) \(level) \(record.label): \(record.message)"
        if !record.metadata.isEmpty { line += ":" + record.metadata.map { " \($0.key)=\($0.value)" }.joined() }
        return Array((line + "\n").utf8)
    }

    /// hclog's JSON line: `@level`, `@message`, `@module`, `@timestamp`, then the metadata.
    static func jsonLine(_ record: LogControl.Record) -> [UInt8] {
        let level = switch record.level {
        case .trace: "trace"
        case .debug: "debug"
        case .info, .notice: "info"
        case .warning: "warn"
        case .error, .critical: "error"
        }
        var object = JSONObject([
            ("@level", .string(level)), ("@message", .string(record.message)), ("@module", .string(record.label)),
            ("@timestamp", .string(timestamp.format(record.date))),
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

    public init(logLevel: Logger.Level, nodeMeta: [String: String]) {
        self.logLevel = logLevel
        self.nodeMeta = nodeMeta
    }
}
