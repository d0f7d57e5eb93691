import ArgumentParser
import Foundation
import Logging
import Registry
import ServiceLifecycle

struct RegistryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry",
        abstract: "Run the registry: Consul-compatible catalog, health checks and API, durable on SQLite.")

    @Option(name: .long, help: "Where the HTTP API listens (HOST:PORT; port 0 picks a free one).")
    var httpAddr = "127.0.0.1:8500"

    @Option(name: .long, help: "Directory of the SQLite store.")
    var dataDir = "./data"

    @Option(name: .long, help: "Node name of this registry (default: host name).")
    var node: String?

    @Option(name: .long, help: "Datacenter name.")
    var datacenter = "dc1"

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        var config = RegistryConfiguration()
        guard let (host, port) = HostPort.parse(httpAddr) else {
            throw ValidationError("--http-addr must be HOST:PORT, got \"\(httpAddr)\"")
        }
        config.host = host
        config.port = port
        config.dataDirectory = dataDir
        config.datacenter = datacenter
        if let node { config.nodeName = node }
        let logger = LogSetup.make(label: "trellis.registry", level: logLevel)
        let dataDirectory = config.dataDirectory
        let server = RegistryServer(config: config, logger: logger) { address in
            let line = "trellis registry listening on http://\(address) (data in \(dataDirectory))\n"
            FileHandle.standardOutput.write(Data(line.utf8))
        }
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: server)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

enum HostPort {
    static func parse(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }
}

enum LogSetup {
    /// A stderr logger at `level`, so stdout stays for the command's own output.
    static func make(label: String, level: Logger.Level) -> Logger {
        var logger = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = level
        return logger
    }
}
