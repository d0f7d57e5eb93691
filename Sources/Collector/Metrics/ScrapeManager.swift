import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import Telemetry
import TrellisCore
import TrellisHTTP

/// Scrapes every target on its own schedule, so a slow or dead target never delays the others.
public final class ScrapeManager: Sendable {
    public struct Settings: Sendable {
        public var interval: Duration = .seconds(15)
        public var timeout: Duration = .seconds(10)
        public var relabel: [RelabelRule] = []
        public init() {}
    }

    private let client: HTTPClient
    private let store: SeriesStore
    private let settings: Settings
    private let metrics: CollectorMetrics
    private let logger: Logger
    private let running = Mutex<[String: (target: ScrapeTarget, task: Task<Void, Never>)]>([:])

    public init(client: HTTPClient, store: SeriesStore, settings: Settings, metrics: CollectorMetrics, logger: Logger) {
        self.client = client
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
    }

    /// Starts loops for new targets and stops (and forgets the series of) vanished ones.
    public func update(_ targets: [ScrapeTarget]) {
        let wanted = Dictionary(targets.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        let stopped = running.withLock { running -> [ScrapeTarget] in
            var stopped: [ScrapeTarget] = []
            for (key, entry) in running where wanted[key] != entry.target {
                entry.task.cancel()
                running.removeValue(forKey: key)
                stopped.append(entry.target)
            }
            for (key, target) in wanted where running[key] == nil {
                running[key] = (target, Task { await self.loop(target) })
            }
            return stopped
        }
        for target in stopped { store.remove(target) }
        metrics.targets.set(Double(wanted.count))
        if !stopped.isEmpty || !targets.isEmpty {
            logger.debug("scrape targets", metadata: ["count": "\(wanted.count)", "removed": "\(stopped.count)"])
        }
    }

    public func stopAll() {
        update([])
    }

    private func loop(_ target: ScrapeTarget) async {
        // Spread first scrapes over the interval, deterministically per target.
        let offset = Double(UInt(bitPattern: target.key.hashValue) % 1000) / 1000 * 0.2
        try? await Task.sleep(for: settings.interval * offset)
        while !Task.isCancelled {
            let result = await scrape(target)
            guard !Task.isCancelled else { return }
            store.store(result, for: target)
            metrics.scrapes(result: result.up ? "success" : "error").increment()
            try? await Task.sleep(for: settings.interval)
        }
    }

    func scrape(_ target: ScrapeTarget) async -> ScrapeResult {
        let started = ContinuousClock.now
        var headers = HTTPHeaders()
        headers.add(name: "Accept", value: "text/plain;version=0.0.4;q=1,*/*;q=0.1")
        headers.add(name: "Accept-Encoding", value: "gzip")
        headers.add(name: "User-Agent", value: "trellis-collector")
        headers.add(name: "X-Prometheus-Scrape-Timeout-Seconds", value: String(settings.timeout.seconds))
        if let token = target.token { headers.add(name: "X-Consul-Token", value: token) }
        func failed(_ error: String) -> ScrapeResult {
            ScrapeResult(families: [], up: false, durationSeconds: started.duration(to: .now).seconds,
                         samplesScraped: 0, error: error, time: Date())
        }
        do {
            let response = try await client.send(.GET, host: target.host, port: target.port, path: target.path, headers: headers,
                                                  timeout: .nanoseconds(settings.timeout.nanoseconds))
            guard response.status == .ok else { return failed("server returned HTTP status \(response.status.code)") }
            var body = response.bodyBytes
            if response.headers.first(name: "Content-Encoding")?.lowercased() == "gzip" {
                body = try Compression.decompress(body, limit: 256 << 20)
            }
            let families = try ExpositionParser.parse(body)
            let (rendered, count) = Self.label(families, target: target, relabel: settings.relabel)
            return ScrapeResult(families: rendered, up: true, durationSeconds: started.duration(to: .now).seconds,
                                samplesScraped: count, error: nil, time: Date())
        } catch {
            return failed("\(error)")
        }
    }

    /// Adds the target's labels (an exposed label of the same name becomes `exported_<name>`, as
    /// Prometheus does without `honor_labels`), applies the relabel rules and renders each series.
    static func label(_ families: [MetricFamily], target: ScrapeTarget, relabel: [RelabelRule]) -> ([RenderedFamily], Int) {
        var count = 0
        var rendered: [RenderedFamily] = []
        rendered.reserveCapacity(families.count)
        for family in families {
            var out = RenderedFamily(name: family.name, help: family.help, type: family.type, series: [])
            out.series.reserveCapacity(family.samples.count)
            for sample in family.samples {
                count += 1
                var labels = sample.labels
                for extra in target.labels {
                    if let clash = labels.firstIndex(where: { $0.name == extra.name }) { labels[clash].name = "exported_" + extra.name }
                    labels.append(extra)
                }
                var name = sample.name
                if !relabel.isEmpty {
                    labels.append(Label("__name__", name))
                    guard relabel.allSatisfy({ $0.apply(&labels) }) else { continue }
                    name = labels.first { $0.name == "__name__" }?.value ?? name
                    labels.removeAll { $0.name.hasPrefix("__") }  // __name__ and any temporary label
                }
                out.series.append(SeriesStore.series(name: name, labels: labels, value: sample.value, timestampMs: sample.timestampMs))
            }
            if !out.series.isEmpty { rendered.append(out) }
        }
        return (rendered, count)
    }
}
