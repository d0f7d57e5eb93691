import Prometheus
import Telemetry
import TrellisCore

/// The registry's own metrics: HTTP traffic, blocking queries, catalog contents, store commits, probes.
public final class RegistryMetrics: Sendable {
    public let registry = MetricsRegistry(component: "registry")
    private let commitLatency: ValueHistogram
    private let commitBatches: Counter
    private let commitWrites: Counter
    private let waiting: Gauge
    private let services: Gauge
    private let instances: Gauge
    private let index: Gauge

    public init() {
        commitLatency = registry.histogram("store_commit_duration", help: "Time to make one group commit durable.")
        commitBatches = registry.counter("store_commits", help: "Group commits made durable.")
        commitWrites = registry.counter("store_writes", help: "Writes made durable.")
        waiting = registry.gauge("blocking_queries_waiting", help: "Blocking queries parked waiting for a change.")
        services = registry.gauge("services", help: "Distinct service names in the catalog.")
        instances = registry.gauge("service_instances", help: "Service instances in the catalog.")
        index = registry.gauge("raft_index", help: "The catalog's current index (X-Consul-Index).")
    }

    private let requestInstruments = InstrumentCache<RequestInstruments>()
    private let probeCounters = InstrumentCache<Counter>()

    private struct RequestInstruments: Sendable {
        let count: Counter
        let latency: ValueHistogram
    }

    public func recordRequest(endpoint: String, method: String, code: Int, seconds: Double) {
        let instruments = requestInstruments.get("\(endpoint) \(method) \(code)") {
            RequestInstruments(
                count: registry.counter("http_requests", help: "HTTP requests by endpoint, method and status code.",
                                        labels: [("endpoint", endpoint), ("method", method), ("code", String(code))]),
                latency: registry.histogram("http_request_duration", help: "HTTP request latency by endpoint (blocking waits included).",
                                            labels: [("endpoint", endpoint)]))
        }
        instruments.count.increment()
        instruments.latency.record(seconds)
    }

    public func recordCommit(seconds: Double, batches: Int) {
        commitLatency.record(seconds)
        commitBatches.increment()
        commitWrites.increment(by: Int64(batches))
    }

    public func recordProbe(type: String, status: HealthStatus) {
        probeCounters.get(type + " " + status.rawValue) {
            registry.counter("check_runs", help: "Health check probes run, by type and result.",
                             labels: [("type", type), ("status", status.rawValue)])
        }.increment()
    }

    /// Refreshes the state gauges and renders the exposition text.
    public func render(catalog: Catalog) -> [UInt8] {
        waiting.set(Int64(catalog.hub.waitingCount))
        let (serviceCount, instanceCount, statusCounts, currentIndex) = catalog.read { state in
            (state.serviceCount, state.instanceCount, state.checkCountsByStatus(), state.index)
        }
        services.set(Int64(serviceCount))
        instances.set(Int64(instanceCount))
        index.set(Int64(currentIndex))
        for status in [HealthStatus.passing, .warning, .critical] {
            registry.gauge("checks", help: "Health checks by status.", labels: [("status", status.rawValue)])
                .set(Int64(statusCounts[status] ?? 0))
        }
        return registry.render()
    }
}
