import Prometheus
import Telemetry

/// The collector's own instruments (`trellis_collector_*`).
public final class CollectorMetrics: Sendable {
    public let registry = MetricsRegistry(component: "collector")
    private let counters = InstrumentCache<Counter>()
    let targets: Gauge
    let targetsUp: Gauge
    let series: Gauge
    let bufferBytes: Gauge
    let bufferUnshippedBytes: Gauge
    let linesShipped: Counter
    let pushDuration: ValueHistogram

    public init() {
        targets = registry.gauge("scrape_targets", help: "Scrape targets known (registry, static, self-discovered).")
        targetsUp = registry.gauge("scrape_targets_up", help: "Scrape targets whose last scrape succeeded.")
        series = registry.gauge("series", help: "Series held from the last scrape of every target.")
        bufferBytes = registry.gauge("log_buffer", unit: "bytes", help: "Bytes of log records in the disk buffer.")
        bufferUnshippedBytes = registry.gauge("log_buffer_unshipped", unit: "bytes",
                                              help: "Bytes of log records not yet acknowledged by Loki.")
        linesShipped = registry.counter("log_lines_shipped", help: "Log lines acknowledged by Loki.")
        pushDuration = registry.histogram("log_push_duration", help: "Duration of pushes to Loki.")
        // The series dashboards and alerts read exist from the start, at zero.
        _ = (scrapes(result: "success"), scrapes(result: "error"), linesReceived(source: "push"), pushErrors(reason: "connection"))
    }

    /// Sets the state gauges; called right before `/metrics` is rendered.
    func refresh(store: SeriesStore, buffer: LogBuffer, unshippedFrom position: BufferPosition) {
        let counts = store.counts
        series.set(Double(counts.series))
        targetsUp.set(Double(counts.targetsUp))
        let sizes = buffer.sizes(after: position)
        bufferBytes.set(Double(sizes.total))
        bufferUnshippedBytes.set(Double(sizes.after))
    }

    func scrapes(result: String) -> Counter {
        counter("scrapes", "Scrapes by result (success, error).", ("result", result))
    }

    func linesReceived(source: String) -> Counter {
        counter("log_lines_received", "Log lines accepted, by source (push, file, journal).", ("source", source))
    }

    func linesRejected(reason: String) -> Counter {
        counter("log_lines_rejected", "Log lines refused with Loki's reason (invalid_labels, line_too_long, rate_limited…).", ("reason", reason))
    }

    func linesDropped(reason: String) -> Counter {
        counter("log_lines_dropped", "Log lines dropped on purpose: pipeline rules, or rejected by Loki as invalid.", ("reason", reason))
    }

    func pushErrors(reason: String) -> Counter {
        counter("log_push_errors", "Failed pushes to Loki by reason (status code or connection); they are retried.", ("reason", reason))
    }

    private func counter(_ name: String, _ help: String, _ label: (String, String)) -> Counter {
        counters.get("\(name)/\(label.1)") { registry.counter(name, help: help, labels: [label]) }
    }
}
