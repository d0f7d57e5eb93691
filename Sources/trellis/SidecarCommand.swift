import ArgumentParser
import Foundation
import Logging
import NIOCore
import Policy
import Sidecar
import TrellisCore

struct SidecarCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sidecar",
        abstract: "Run the sidecar proxy of one service instance (and, after --, the service itself).",
        discussion: """
        Example: trellis sidecar --service orders --port 9002 --upstream products --upstream users -- ./orders-service
        The service gets PORT (where it must listen) and UPSTREAM_<NAME>_URL for every upstream.
        """)

    @Option(name: .long, help: "Service name to register.") var service: String
    @Option(name: .long, help: "Public (inbound) port; 0 picks a free one.") var port: Int
    @Option(name: .long, parsing: .singleValue, help: "Upstream service, NAME or NAME:LOCAL_PORT; repeatable.") var upstream: [String] = []
    @Option(name: .long, help: "Port of a service run by someone else (without a command).") var localPort: Int?
    @Option(name: .long, help: "Admin port (/metrics, /ready, /config, /clusters); default: a free one.") var adminPort: Int = 0
    @Option(name: .long, help: "Registry HOST:PORT (default: $TRELLIS_ADDR, $CONSUL_HTTP_ADDR, 127.0.0.1:8500).") var registry: String?
    @OptionGroup var token: TokenOption
    @Option(name: .long, help: "Address to register and bind the public and admin listeners on.") var address = "127.0.0.1"
    @Option(name: .long, help: "Instance id (default: <service>-<port>, or <service>-<address>-<port> off loopback).") var id: String?
    @Option(name: .long, parsing: .singleValue, help: "Tag to register; repeatable.") var tag: [String] = []
    @Option(name: .long, parsing: .singleValue, help: "Service Meta KEY=VALUE; repeatable (weight=N sets the balancing weight).") var meta: [String] = []
    @Option(name: .long, help: "Policy YAML used until one is stored in the registry KV.") var policy: String?
    @Option(name: .long, help: "Health path of the service (2xx = ready); default: any answer on /.") var healthPath: String?
    @Option(name: .long, help: "How often the registry checks readiness (Go duration).") var checkInterval = "2s"
    @Option(name: .long, help: "How long draining waits for requests in flight (Go duration).") var drainTimeout = "10s"
    @Option(name: .long, help: "Time a client has to send a whole request head once it started (Go duration; 408 after).")
    var requestHeadersTimeout = "10s"
    @Option(name: .long, help: "How long a client connection may stay idle between requests (Go duration).") var idleTimeout = "60s"
    @Option(name: .long, help: "Access log: stdout or off.") var accessLog = "stdout"
    @Option(name: .long, help: "Inbound mutual TLS: strict (mesh peers only), permissive (mutual TLS and plaintext on one port) or off. Calls to upstreams use mutual TLS wherever the instance takes it.")
    var mtls: MTLSMode = .off
    @Option(name: .long, help: "Collector HOST:PORT for log lines (default: found in the registry); \"off\" ships none.") var collector: String?
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: Logger.Level = .info
    @Option(name: .long, help: "Log format: json, text, or auto.") var logFormat: LogSetup.Format = .auto
    @Argument(parsing: .postTerminator, help: "Command that runs the service.") var command: [String] = []

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0-65535") }
        if command.isEmpty && localPort == nil {
            throw ValidationError("give --local-port (a service someone else runs) or the service command after --")
        }
        guard GoDuration.parseNanoseconds(checkInterval) != nil else { throw ValidationError("--check-interval must be a duration like 2s") }
        guard GoDuration.parseNanoseconds(drainTimeout) != nil else { throw ValidationError("--drain-timeout must be a duration like 10s") }
        for (flag, value) in [("--request-headers-timeout", requestHeadersTimeout), ("--idle-timeout", idleTimeout)] {
            guard (GoDuration.parseNanoseconds(value) ?? 0) > 0 else { throw ValidationError("\(flag) must be a duration like 10s, got \"\(value)\"") }
        }
        guard ["stdout", "off"].contains(accessLog) else { throw ValidationError("--access-log must be stdout or off") }
    }

    func run() async throws {
        var settings = SidecarSettings(service: service, port: port)
        settings.localPort = localPort
        settings.adminPort = adminPort
        settings.address = address
        settings.instanceID = id
        settings.tags = tag
        settings.command = command
        settings.healthPath = healthPath
        settings.checkInterval = checkInterval
        settings.drainTimeout = .nanoseconds(GoDuration.parseNanoseconds(drainTimeout)!)
        settings.connectionTimeouts = ConnectionTimeouts(requestHeaders: .nanoseconds(GoDuration.parseNanoseconds(requestHeadersTimeout)!),
                                                         idle: .nanoseconds(GoDuration.parseNanoseconds(idleTimeout)!))
        settings.accessLog = accessLog == "stdout"
        settings.mtls = mtls
        if collector == "off" {
            settings.shipLogs = false
        } else if let collector {
            guard let (host, port) = HostPort.parse(collector) else { throw ValidationError("--collector must be HOST:PORT or off, got \"\(collector)\"") }
            settings.collector = (host, port)
        }
        for item in upstream {
            let parts = item.split(separator: ":", maxSplits: 1).map(String.init)
            guard let name = parts.first, !name.isEmpty, parts.count == 1 || Int(parts[1]).map({ (0...65535).contains($0) }) == true else {
                throw ValidationError("--upstream must be NAME or NAME:PORT, got \"\(item)\"")
            }
            guard name != SidecarPolicy.inboundListenerName else {
                throw ValidationError("--upstream: \"\(SidecarPolicy.inboundListenerName)\" names the sidecar's inbound listener (admin /clusters, access logs); register that service under another name")
            }
            settings.upstreams.append((name, parts.count == 2 ? Int(parts[1])! : 0))
        }
        for item in meta {
            guard let eq = item.firstIndex(of: "="), eq != item.startIndex else { throw ValidationError("--meta must be KEY=VALUE, got \"\(item)\"") }
            settings.meta[String(item[..<eq])] = String(item[item.index(after: eq)...])
        }
        (settings.registryHost, settings.registryPort) = try RegistryOption.hostPort(registry)
        settings.registryToken = try token.resolve()
        if let policy {
            do { settings.filePolicy = try PolicyParser.read(file: policy).policy } catch { throw ValidationError("\(error)") }
        }
        if let executable = command.first {
            do { _ = try ExecutableLookup.resolve(executable, path: ProcessInfo.processInfo.environment["PATH"]) } catch {
                throw ValidationError("\(error)")
            }
        }
        let logger = LogSetup.make(label: "trellis.sidecar", level: logLevel, format: logFormat)
        let sidecar = Sidecar(settings: settings, logger: logger) { banner in
            FileHandle.standardError.write(Data((banner + "\n").utf8))
        }
        try await LogSetup.runUntilSignalled(sidecar, logger: logger)
    }
}
extension MTLSMode: ExpressibleByArgument {}
