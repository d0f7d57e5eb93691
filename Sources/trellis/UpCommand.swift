import ArgumentParser
import Fleet
import Foundation
import Logging
import ServiceLifecycle
import TrellisCore
import UnixSignals

struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Run a whole topology on this machine: registry, collector, and every service replica behind its sidecar.",
        discussion: """
        Commands are looked up beside the trellis executable, then in PATH. Every process logs to
        <data_dir>/logs/; <data_dir>/endpoints.env says where everything answers. Ctrl-C, SIGTERM or SIGHUP stops
        the sidecars (which drain and stop their services), then the collector, then the registry.
        """)

    @Argument(help: "Topology YAML file.") var topology = "trellis.yaml"
    @Option(name: .long, help: "Directory for the registry store, the collector buffer, service databases and logs (default: the topology's data_dir).")
    var dataDir: String?
    @Option(name: .long, help: "Registry port, 0 for a free one (default: the topology's, else a free one).") var registryPort: Int?
    @Option(name: .long, help: "Collector port, 0 for a free one (default: the topology's, else a free one).") var collectorPort: Int?
    @Option(name: .long, help: "Log level of trellis up itself.") var logLevel: Logger.Level = .info

    func run() async throws {
        let trellis = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var fleet: Topology
        do {
            fleet = try Topology.load(file: topology)
            if let dataDir { fleet.dataDir = dataDir }
            if let registryPort { fleet.registryPort = registryPort == 0 ? nil : registryPort }
            if let collectorPort { fleet.collectorPort = collectorPort == 0 ? nil : collectorPort }
            let beside = URL(fileURLWithPath: trellis).deletingLastPathComponent().path
            try fleet.check(searchPath: beside + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"))
        } catch {
            CLI.fail("error: \(error)")
        }
        signal(SIGPIPE, SIG_IGN)  // stdout may go to a pipe that closes; the fleet must still be stopped
        let logger = LogSetup.make(label: "trellis.up", level: logLevel, format: .text)
        // SIGHUP too: a closed terminal stops the fleet instead of orphaning it.
        try await LogSetup.runUntilSignalled(UpService(topology: fleet, trellis: trellis, logger: logger), logger: logger,
                                             signals: [.sigterm, .sigint, .sighup])
    }
}

/// Starts the fleet, shows its status until SIGTERM/SIGINT, then stops it in order.
private struct UpService: Service {
    let topology: Topology
    let trellis: String
    let logger: Logger

    func run() async throws {
        let fleet: Fleet
        do { fleet = try await Fleet.start(topology, trellis: trellis, logger: logger) } catch { CLI.fail("error: \(error)") }
        let endpoints = "\(topology.dataDir)/endpoints.env"
        try fleet.endpointsFile().write(toFile: endpoints, atomically: true, encoding: .utf8)
        var rows = [["registry", "http://\(fleet.registryAddress)", fleet.dnsPort.map { "DNS 127.0.0.1:\($0)" } ?? ""],
                    ["ui", "http://\(fleet.registryAddress)/ui/", fleet.managementTokenFile.map { "log in with the token in \($0)" } ?? ""],
                    ["collector", "http://\(fleet.collectorAddress)", ""]]
        if let gateway = fleet.gateway {
            rows.append(["gateway", "http://127.0.0.1:\(gateway.port)", "admin http://127.0.0.1:\(gateway.adminPort)"])
        }
        rows += fleet.instances.map { [$0.id, "http://127.0.0.1:\($0.port)", "admin http://127.0.0.1:\($0.adminPort)"] }
        rows.append(["endpoints", endpoints, "(source it for TRELLIS_ADDR and <SERVICE>_URL)"])
        Self.output(TextTable.lines(rows).joined(separator: "\n") + "\n")

        let board = StatusBoard(fleet: fleet, terminal: isatty(STDOUT_FILENO) == 1) { Self.output($0) }
        // The shutdown signal cancels the polling (a registry call in flight closes its connection),
        // then the fleet is stopped in order.
        await cancelWhenGracefulShutdown {
            let missing = await fleet.waitUntilPassing(timeout: .seconds(60))
            guard !Task.isCancelled else { return }
            Self.output(missing.isEmpty ? "all \(fleet.instances.count) instances passing\n"
                        : "not passing after 60 s: \(missing.joined(separator: ", ")) (see \(topology.dataDir)/logs/)\n")
            await board.run()
        }
        Self.output("stopping: sidecars and services, then collector, then registry\n")
        await fleet.stop()
        Self.output("stopped\n")
    }

    /// Writes to stdout; a closed terminal (EIO) or pipe must not stop `trellis up` from stopping the fleet.
    private static func output(_ text: String) {
        try? FileHandle.standardOutput.write(contentsOf: Data(text.utf8))
    }
}
