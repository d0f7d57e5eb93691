import ArgumentParser
import Foundation
import Logging
import NIOCore
import Policy
import Sidecar
import TrellisCore

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run the public entry of a fleet: routes, JWT and API-key checks, per-client limits and CORS.",
        discussion: """
        Example: trellis gateway --name edge --port 8080 --policy gateway.yaml
        Rules come from the registry KV (trellis/gateways/<name>, applied live) or, until one is stored
        there, from --policy; backends are found in the registry as sidecar upstreams are.
        """)

    @Option(name: .long, help: "Gateway name: its policy key trellis/gateways/<name> and its registration.") var name = "gateway"
    @Option(name: .long, help: "Public port; 0 picks a free one.") var port: Int
    @Option(name: .long, help: "Address the public and admin listeners bind.") var address = "0.0.0.0"
    @Option(name: .long, help: "Event loops serving the public port (default: one per core).") var workers: Int?
    @Option(name: .long, help: "Admin port (/metrics, /ready, /config, /routes, /clusters); default: a free one.") var adminPort: Int = 0
    @Option(name: .long, help: "Registry HOST:PORT (default: $TRELLIS_ADDR, $CONSUL_HTTP_ADDR, 127.0.0.1:8500).") var registry: String?
    @OptionGroup var token: TokenOption
    @Option(name: .long, help: "Gateway policy YAML used until one is stored in the registry KV.") var policy: String?
    @Option(name: .long, help: "Certificate chain (PEM, the leaf first) to serve the public port over TLS.") var tlsCertFile: String?
    @Option(name: .long, help: "Private key (PEM) of --tls-cert-file.") var tlsKeyFile: String?
    @Option(name: .long, help: "Time a client has to send a whole request head once it started (Go duration; 408 after).")
    var requestHeadersTimeout = "10s"
    @Option(name: .long, help: "How long a client connection may stay idle between requests (Go duration).") var idleTimeout = "60s"
    @Option(name: .long, help: "How long draining waits for requests in flight (Go duration).") var drainTimeout = "10s"
    @Option(name: .long, help: "Access log: stdout or off.") var accessLog = "stdout"
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: Logger.Level = .info
    @Option(name: .long, help: "Log format: json, text, or auto.") var logFormat: LogSetup.Format = .auto

    func validate() throws {
        guard (0...65535).contains(port), (0...65535).contains(adminPort) else { throw ValidationError("--port and --admin-port must be 0-65535") }
        if let workers { guard (1...256).contains(workers) else { throw ValidationError("--workers must be 1-256") } }
        guard !name.isEmpty, !name.contains("/") else { throw ValidationError("--name must be a non-empty name without /") }
        for (flag, value) in [("--request-headers-timeout", requestHeadersTimeout), ("--idle-timeout", idleTimeout), ("--drain-timeout", drainTimeout)] {
            guard (GoDuration.parseNanoseconds(value) ?? 0) > 0 else { throw ValidationError("\(flag) must be a duration like 10s, got \"\(value)\"") }
        }
        guard ["stdout", "off"].contains(accessLog) else { throw ValidationError("--access-log must be stdout or off") }
        guard (tlsCertFile == nil) == (tlsKeyFile == nil) else { throw ValidationError("--tls-cert-file and --tls-key-file go together") }
    }

    func run() async throws {
        var settings = GatewaySettings(name: name, port: port)
        settings.address = address
        if let workers { settings.workers = workers }
        settings.adminPort = adminPort
        settings.connectionTimeouts = ConnectionTimeouts(requestHeaders: .nanoseconds(GoDuration.parseNanoseconds(requestHeadersTimeout)!),
                                                         idle: .nanoseconds(GoDuration.parseNanoseconds(idleTimeout)!))
        settings.drainTimeout = .nanoseconds(GoDuration.parseNanoseconds(drainTimeout)!)
        settings.accessLog = accessLog == "stdout"
        (settings.registryHost, settings.registryPort) = try RegistryOption.hostPort(registry)
        settings.registryToken = try token.resolve()
        if let policy {
            do { settings.filePolicy = try GatewayPolicyParser.read(file: policy).policy } catch { throw ValidationError("\(error)") }
        }
        if let tlsCertFile, let tlsKeyFile {
            do {
                settings.tls = (try String(contentsOfFile: tlsCertFile, encoding: .utf8), try String(contentsOfFile: tlsKeyFile, encoding: .utf8))
            } catch {
                throw ValidationError("cannot read the TLS certificate or key: \(error.localizedDescription)")
            }
        }
        let logger = LogSetup.make(label: "trellis.gateway", level: logLevel, format: logFormat)
        let gateway = Gateway(settings: settings, logger: logger) { banner in
            FileHandle.standardError.write(Data((banner + "\n").utf8))
        }
        try await LogSetup.runUntilSignalled(gateway, logger: logger)
    }
}
