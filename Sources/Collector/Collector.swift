// Collector: scrapes every registered /metrics into one Prometheus endpoint and receives, buffers
// and ships logs with Loki-compatible pushes, losing no line while Loki is down.

import ConsulClient
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import TrellisCore
import TrellisHTTP

/// The collector process: scrape targets found in the registry, serve them as one exposition,
/// take logs in (push, files, journal) into a durable buffer and ship them to Loki.
public final class Collector: Service {
    private let settings: CollectorSettings
    private let logger: Logger
    private let onReady: @Sendable (String) -> Void
    public let metrics = CollectorMetrics()

    public init(settings: CollectorSettings, logger: Logger, onReady: @escaping @Sendable (String) -> Void) {
        self.settings = settings
        self.logger = logger
        self.onReady = onReady
    }

    public func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { group.shutdownGracefully { _ in } }
        let client = HTTPClient(group: group)
        let buffer = try LogBuffer(directory: settings.dataDir + "/logs")
        defer { buffer.close() }
        let ingest = LogIngest(limits: settings.limits, pipeline: settings.pipeline, buffer: buffer, metrics: metrics)
        let store = SeriesStore()
        let scraper = ScrapeManager(client: client, store: store, settings: settings.scrape, metrics: metrics, logger: logger)
        let shipper = settings.loki.map { loki in
            LokiShipper(buffer: buffer, position: PositionFile(path: settings.dataDir + "/shipped.position"), target: loki,
                        client: client, metrics: metrics, logger: logger, batchBytes: settings.batchBytes,
                        batchWait: settings.batchWait, retentionBytes: settings.retentionBytes)
        }
        let api = CollectorAPI(store: store, ingest: ingest, buffer: buffer, metrics: metrics) { shipper?.shipped ?? buffer.end }
        let server = try await HTTPServer.start(host: settings.httpHost, port: settings.httpPort, group: group,
                                                limits: HTTPLimits(maxBodySize: 64 << 20), responder: api, logger: logger)
        let port = server.localAddress.port!
        let registry = ConsulClient(host: settings.registryHost, port: settings.registryPort, http: client, token: settings.registryToken)
        let advertised = ["0.0.0.0", "::"].contains(settings.httpHost) ? "127.0.0.1" : settings.httpHost
        let registration = Registration(registry: registry, logger: logger, body: registrationBody(address: advertised, port: port),
                                        instanceID: "\(WellKnownNames.collectorService)-\(port)")
        let discovery = TargetDiscovery(registryHost: settings.registryHost, port: settings.registryPort, http: client,
                                        token: settings.registryToken,
                                        ignoredServices: [WellKnownNames.collectorService])
        onReady("trellis collector listening on http://\(HostPort.format(settings.httpHost, port)) (metrics /metrics, logs /loki/api/v1/push), "
                + (settings.loki.map { "shipping logs to http://\(HostPort.format($0.host, $0.port))\($0.path)" } ?? "keeping logs in \(settings.dataDir)/logs"))

        SystemdNotifier.ready(status: "collecting on \(HostPort.format(settings.httpHost, port))")

        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { [settings, logger] in
                await discovery.run(onError: { logger.warning("registry unreachable for discovery", metadata: ["error": "\($0)"]) }) { found in
                    scraper.update(found + settings.staticTargets)
                }
            }
            scraper.update([discovery.registryTarget] + settings.staticTargets)
            tasks.addTask { await registration.keepRegistered() }
            if let shipper {
                tasks.addTask { await shipper.run() }
            } else {
                tasks.addTask { [settings] in
                    // Without Loki, retention alone bounds the buffer.
                    while !Task.isCancelled {
                        buffer.trim(shipped: buffer.end, retentionBytes: settings.retentionBytes)
                        try? await Task.sleep(for: .seconds(1))
                    }
                }
            }
            if !settings.files.isEmpty {
                let tailer = FileTailer(sources: settings.files, positionsPath: settings.dataDir + "/file-positions.json", ingest: ingest, logger: logger)
                tasks.addTask { await tailer.run() }
            }
            if let journal = settings.journal {
                let reader = JournalReader(directory: journal.directory, matches: journal.matches,
                                           cursorPath: settings.dataDir + "/journal.cursor", ingest: ingest, logger: logger)
                tasks.addTask { await reader.run() }
            }
            try? await gracefulShutdown()
            SystemdNotifier.stopping()
            logger.info("stopping")
            await registration.deregister()
            tasks.cancelAll()
        }
        scraper.stopAll()
        await server.close()
        logger.info("stopped")
    }

    private func registrationBody(address: String, port: Int) -> [UInt8] {
        JSON.object(JSONObject([
            ("ID", .string("\(WellKnownNames.collectorService)-\(port)")),
            ("Name", .string(WellKnownNames.collectorService)),
            ("Address", .string(address)),
            ("Port", .int(Int64(port))),
            ("Check", .object(JSONObject([
                ("CheckID", .string("collector:\(port)")),
                ("Name", .string("collector readiness")),
                ("HTTP", .string("http://\(HostPort.format(address, port))/ready")),
                ("Interval", .string("5s")),
                ("Timeout", .string("1s")),
                ("DeregisterCriticalServiceAfter", .string("1m")),
            ]))),
        ])).serialized()
    }
}
