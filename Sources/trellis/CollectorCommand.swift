import ArgumentParser
import Collector
import ConsulClient
import Foundation
import Logging
import TrellisCore
import TrellisHTTP

struct CollectorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "collector",
        abstract: "Run the collector: scrape the fleet for Prometheus, take logs in and ship them to Loki.",
        discussion: """
        Prometheus scrapes http://HTTP_ADDR/metrics; Loki clients push to http://HTTP_ADDR/loki/api/v1/push.
        Without --loki-url the logs stay on disk and `trellis logs` reads them.
        """)

    @Option(name: .long, help: "Where the HTTP API listens (HOST:PORT; port 0 picks a free one). Default 127.0.0.1:9464.")
    var httpAddr = "127.0.0.1:9464"
    @Option(name: .long, help: "Directory of the log buffer and saved positions. Default ./collector-data.")
    var dataDir = "./collector-data"
    @Option(name: .long, help: "Registry HOST:PORT (default: $TRELLIS_ADDR, $CONSUL_HTTP_ADDR, 127.0.0.1:8500).")
    var registry: String?

    @OptionGroup var token: TokenOption
    @Option(name: .long, help: "Loki base URL (http://HOST:3100) to ship logs to.")
    var lokiURL: String?
    @Option(name: .long, help: "Tenant sent to Loki as X-Scope-OrgID.")
    var lokiTenant: String?
    @Option(name: .long, help: "Push format: protobuf (snappy) or json (gzip).")
    var lokiFormat: String?
    @Option(name: .long, help: "YAML file: scrape (interval, timeout, static_targets, relabel), logs (limits, pipeline, files, journal, retention_bytes), loki.")
    var config: String?
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info
    @Option(name: .long, help: "Log format: json, text, or auto.")
    var logFormat: LogSetup.Format = .auto

    func run() async throws {
        var settings = CollectorSettings()
        if let config {
            guard let data = FileManager.default.contents(atPath: config) else { throw ValidationError("cannot read config file \(config)") }
            do { try settings.apply(yaml: String(decoding: data, as: UTF8.self)) } catch { throw ValidationError("\(config): \(error)") }
        }
        guard let (host, port) = HostPort.parse(httpAddr) else { throw ValidationError("--http-addr must be HOST:PORT, got \"\(httpAddr)\"") }
        (settings.httpHost, settings.httpPort) = (host, port)
        settings.dataDir = dataDir
        (settings.registryHost, settings.registryPort) = try RegistryOption.hostPort(registry)
        settings.registryToken = try token.resolve()
        if let lokiURL {
            guard let format = lokiFormat.map(LokiTarget.Format.init) ?? settings.lokiFormat else {
                throw ValidationError("--loki-format must be protobuf or json")
            }
            do { settings.loki = try LokiTarget(url: lokiURL, tenant: lokiTenant ?? settings.lokiTenant, format: format) } catch {
                throw ValidationError("\(error)")
            }
        } else if lokiTenant != nil || lokiFormat != nil, settings.loki == nil {
            throw ValidationError("--loki-tenant and --loki-format need --loki-url")
        }
        let logger = LogSetup.make(label: "trellis.collector", level: logLevel, format: logFormat)
        let collector = Collector(settings: settings, logger: logger) { banner in
            FileHandle.standardOutput.write(Data((banner + "\n").utf8))
        }
        try await LogSetup.runUntilSignalled(collector, logger: logger)
    }
}

struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print a service's logs from the collector.",
        discussion: "Example: trellis logs orders --since 10m --grep trace_id=4bf92f3577b34da6a3ce929d0e0e4736")

    @Argument(help: "Service name (or a LogQL selector such as '{service=\"orders\",level=\"error\"}').")
    var service: String
    @Flag(name: .shortAndLong, help: "Keep printing new lines as they arrive.")
    var follow = false
    @Option(name: .long, help: "How far back to start (Go duration).")
    var since = "1h"
    @Option(name: .long, help: "Most lines printed before following.")
    var limit = 100
    @Option(name: .long, help: "Only lines containing this text.")
    var grep: String?
    @Option(name: .long, help: "Collector HOST:PORT (default: $TRELLIS_COLLECTOR_ADDR, 127.0.0.1:9464).")
    var collector: String?

    func validate() throws {
        guard GoDuration.parseNanoseconds(since) != nil else { throw ValidationError("--since must be a duration like 10m") }
        guard limit > 0 else { throw ValidationError("--limit must be positive") }
    }

    func run() async throws {
        let address = collector ?? ProcessInfo.processInfo.environment["TRELLIS_COLLECTOR_ADDR"] ?? "127.0.0.1:9464"
        let client = ConsulClient(address: address)
        var query = service.hasPrefix("{") ? service : "{service=\"\(service)\"}"
        if let grep { query += " |= " + JSON.string(grep).text }
        var startNs = Int64(Date().timeIntervalSince1970 * 1e9) - GoDuration.parseNanoseconds(since)!
        var first = true
        while true {
            let path = "/loki/api/v1/query_range?direction=forward&limit=\(first ? limit : 5000)&start=\(startNs)"
                + "&end=\(Int64(Date().timeIntervalSince1970 * 1e9) + 1_000_000_000)&query=\(URLPath.escapeQueryValue(query))"
            let response: (status: Int, headers: [String: String], body: [UInt8])
            do { response = try await client.send("GET", path) } catch {
                CLI.fail("error: cannot reach the collector at \(address): \(error)")
            }
            guard response.status == 200, let json = try? JSON.parse(response.body) else {
                CLI.fail("error: collector answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
            }
            var lines: [(ns: Int64, text: String)] = []
            for stream in json["data"]?["result"]?.arrayValue ?? [] {
                for value in stream["values"]?.arrayValue ?? [] {
                    if let ns = value[0]?.stringValue.flatMap(Int64.init), let text = value[1]?.stringValue { lines.append((ns, text)) }
                }
            }
            lines.sort { $0.ns < $1.ns }
            if !lines.isEmpty { FileHandle.standardOutput.write(Data(lines.map { $0.text + "\n" }.joined().utf8)) }
            if let last = lines.last { startNs = last.ns + 1 }
            guard follow else { return }
            first = false
            try await Task.sleep(for: .seconds(1))
        }
    }
}
