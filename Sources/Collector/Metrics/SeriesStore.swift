import Foundation
import Synchronization
import Telemetry

/// A series ready to serve: its name and final labels (for `match[]`) and its exposition line.
struct RenderedSeries: Sendable {
    var name: String
    var labels: [Label]
    var line: [UInt8]
    /// Whether the target exposed a timestamp for the sample (it is then in `line`).
    var timestamped = false
}

struct RenderedFamily: Sendable {
    var name: String
    var help: String?
    var type: MetricType
    var series: [RenderedSeries]
}

/// The latest scrape of one target, already labelled, relabelled and rendered.
struct ScrapeResult: Sendable {
    var families: [RenderedFamily]
    var up: Bool
    var durationSeconds: Double
    var samplesScraped: Int
    var error: String?
    var time: Date
}

/// The latest samples of every target, served as one exposition.
public final class SeriesStore: Sendable {
    private let results = Mutex<[String: (target: ScrapeTarget, result: ScrapeResult)]>([:])

    public init() {}

    func store(_ result: ScrapeResult, for target: ScrapeTarget) {
        results.withLock { $0[target.key] = (target, result) }
    }

    func remove(_ target: ScrapeTarget) {
        _ = results.withLock { $0.removeValue(forKey: target.key) }
    }

    /// Per target: URL, labels, health, last error — for `/api/v1/targets`-style listings.
    func snapshot() -> [(target: ScrapeTarget, result: ScrapeResult)] {
        results.withLock { Array($0.values) }.sorted { $0.target.key < $1.target.key }
    }

    /// Series held, and targets whose last scrape succeeded.
    var counts: (series: Int, targetsUp: Int) {
        results.withLock { results in
            (results.values.reduce(0) { $0 + $1.result.families.reduce(0) { $0 + $1.series.count } },
             results.values.filter(\.result.up).count)
        }
    }

    /// Every family once (targets merged under one HELP/TYPE), then `up`, `scrape_duration_seconds`
    /// and `scrape_samples_scraped` per target as Prometheus records them. With selectors, only the
    /// series matching at least one of them (`/federate`'s `match[]`). With `timestamps`, each sample
    /// carries the time of its scrape, as Prometheus' `/federate` writes it.
    func render(matching selectors: [LabelSelector] = [], timestamps: Bool = false) -> [UInt8] {
        let all = snapshot()
        var order: [String] = []
        var merged: [String: RenderedFamily] = [:]
        for (_, result) in all {
            let scrapedAt = Int64(result.time.timeIntervalSince1970 * 1000)
            for family in result.families {
                if merged[family.name] == nil {
                    order.append(family.name)
                    merged[family.name] = RenderedFamily(name: family.name, help: family.help, type: family.type, series: [])
                }
                merged[family.name]!.series.append(contentsOf: timestamps ? family.series.map { Self.stamped($0, scrapedAt) } : family.series)
            }
        }
        var synthetic: [RenderedFamily] = [
            RenderedFamily(name: "up", help: "1 if the target's last scrape succeeded, else 0.", type: .gauge, series: []),
            RenderedFamily(name: "scrape_duration_seconds", help: "Duration of the target's last scrape.", type: .gauge, series: []),
            RenderedFamily(name: "scrape_samples_scraped", help: "Samples the target's last scrape exposed.", type: .gauge, series: []),
        ]
        for (target, result) in all {
            for (index, value) in [result.up ? 1 : 0, result.durationSeconds, Double(result.samplesScraped)].enumerated() {
                synthetic[index].series.append(Self.series(name: synthetic[index].name, labels: target.labels, value: value))
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(all.reduce(0) { $0 + $1.result.families.reduce(0) { $0 + $1.series.count * 96 } })
        for family in order.sorted().map({ merged[$0]! }) + synthetic {
            let series = selectors.isEmpty ? family.series : family.series.filter { series in
                selectors.contains { $0.matches { name in name == "__name__" ? series.name : series.labels.first { $0.name == name }?.value } }
            }
            guard !series.isEmpty else { continue }
            Exposition.writeHeader(name: family.name, help: family.help, type: family.type, into: &out)
            for item in series { out.append(contentsOf: item.line) }
        }
        return out
    }

    static func series(name: String, labels: [Label], value: Double, timestampMs: Int64? = nil) -> RenderedSeries {
        var line: [UInt8] = []
        Exposition.writeSample(Sample(name: name, labels: labels, value: value, timestampMs: timestampMs), into: &line)
        return RenderedSeries(name: name, labels: labels, line: line, timestamped: timestampMs != nil)
    }

    /// `series` with the scrape's time appended to its line, unless the target gave one.
    private static func stamped(_ series: RenderedSeries, _ milliseconds: Int64) -> RenderedSeries {
        guard !series.timestamped, series.line.last == UInt8(ascii: "\n") else { return series }
        var stamped = series
        stamped.line.removeLast()
        stamped.line.append(contentsOf: " \(milliseconds)\n".utf8)
        stamped.timestamped = true
        return stamped
    }
}
