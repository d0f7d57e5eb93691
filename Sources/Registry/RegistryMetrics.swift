import Prometheus
import Synchronization
import Telemetry
import TrellisCore

/// The registry's own metrics: HTTP traffic, blocking queries, catalog contents, store commits, probes.
public final class RegistryMetrics: Sendable {
    public let registry = MetricsRegistry(component: "registry")
    private let commitLatency: ValueHistogram
    private let commitBatches: Counter
    private let waiting: Gauge
    private let services: Gauge
    private let instances: Gauge
    private let index: Gauge

    public init() {
        commitLatency = registry.histogram("store_commit_duration", help: "Time to make one group commit durable.")
        commitBatches = registry.counter("store_commits", help: "Group commits made durable.")
        waiting = registry.gauge("blocking_queries_waiting", help: "Blocking queries parked waiting for a change.")
        services = registry.gauge("services", help: "Distinct service names in the catalog.")
        instances = registry.gauge("service_instances", help: "Service instances in the catalog.")
        index = registry.gauge("raft_index", help: "The catalog's current index (X-Consul-Index).")
    }

    /// Per-request instruments, looked up once per label set.
    private let requestInstruments = Mutex<[String: (Counter, ValueHistogram)]>([:])

    public func recordRequest(endpoint: String, method: String, code: Int, seconds: Double) {
        let key = "\(endpoint) \(method) \(code)"
        let (counter, histogram) = requestInstruments.withLock { cache in
            if let found = cache[key] { return found }
            let made = (
                registry.counter("http_requests", help: "HTTP requests by endpoint, method and status code.",
                                 labels: [("endpoint", endpoint), ("method", method), ("code", String(code))]),
                registry.histogram("http_request_duration", help: "HTTP request latency by endpoint (blocking waits included).",
                                   labels: [("endpoint", endpoint)]))
            cache[key] = made
            return made
        }
        counter.increment()
        histogram.record(seconds)
    }

    public func recordCommit(seconds: Double, batches: Int) {
        commitLatency.record(seconds)
        commitBatches.increment()
        registry.counter("store_writes", help: "Writes made durable.").increment(by: Int64(batches))
    }

    private let probeCounters = Mutex<[String: Counter]>([:])

    public func recordProbe(type: String, status: HealthStatus) {
        let key = type + " " + status.rawValue
        probeCounters.withLock { cache in
            if let counter = cache[key] { return counter }
            let counter = registry.counter("check_runs", help: "Health check probes run, by type and result.",
                                           labels: [("type", type), ("status", status.rawValue)])
            cache[key] = counter
            return counter
        }.increment()
    }

    /// Refreshes the state gauges and renders the exposition text.
    public func render(catalog: Catalog) -> [UInt8] {
        waiting.set(Int64(catalog.hub.waitingCount))
        let (serviceCount, instanceCount, statusCounts, currentIndex) = catalog.read { state in
            var counts: [HealthStatus: Int] = [:]
            for check in state.allChecks { counts[check.status, default: 0] += 1 }
            return (state.serviceTags().count, state.instanceCount, counts, state.index)
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
