// Telemetry: what every daemon reports: Prometheus metrics and their text exposition (written
// and parsed), JSON log lines, and the live log level behind monitor and reload.

import Prometheus

/// A Prometheus registry with Trellis's naming (`trellis_<component>_<name>_<unit>`) and a scrape hook.
///
/// Gauges that describe current state (queue lengths, table sizes) are set by the component's
/// `/metrics` handler right before the text is rendered, so they cost nothing between scrapes.
public final class MetricsRegistry: Sendable {
    public let prometheus = PrometheusCollectorRegistry()
    public let component: String

    public init(component: String) { self.component = component }

    private func descriptor(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "trellis", subsystem: component, metricName: name, unitName: unit, helpText: help)
    }

    public func counter(_ name: String, unit: String = "total", help: String, labels: [(String, String)] = []) -> Counter {
        labels.isEmpty
            ? prometheus.makeCounter(descriptor: descriptor(name, unit, help))
            : prometheus.makeCounter(descriptor: descriptor(name, unit, help), labels: labels)
    }

    public func gauge(_ name: String, unit: String = "", help: String, labels: [(String, String)] = []) -> Gauge {
        labels.isEmpty
            ? prometheus.makeGauge(descriptor: descriptor(name, unit, help))
            : prometheus.makeGauge(descriptor: descriptor(name, unit, help), labels: labels)
    }

    public func histogram(_ name: String, unit: String = "seconds", help: String, labels: [(String, String)] = [],
                          buckets: [Double] = MetricsRegistry.latencyBuckets) -> ValueHistogram {
        labels.isEmpty
            ? prometheus.makeValueHistogram(descriptor: descriptor(name, unit, help), buckets: buckets)
            : prometheus.makeValueHistogram(descriptor: descriptor(name, unit, help), labels: labels, buckets: buckets)
    }

    /// Latency buckets from 100µs to 10s, fine enough for p50/p99 of local calls.
    public static let latencyBuckets: [Double] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]

    /// The exposition text (format 0.0.4).
    public func render() -> [UInt8] { prometheus.emitToBuffer() }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}
