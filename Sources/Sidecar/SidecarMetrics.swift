import Prometheus
import Telemetry

/// The sidecar's Prometheus instruments (`trellis_sidecar_*`).
///
/// `direction` is `inbound` (callers → this service) or `outbound` (this service → `upstream`);
/// inbound traffic has `upstream="local"`.
public final class SidecarMetrics: Sendable {
    /// `trellis_sidecar_*`, or `trellis_gateway_*` for a gateway.
    public let registry: MetricsRegistry
    private let localResponses = InstrumentCache<Counter>()
    private let retryCounters = InstrumentCache<Counter>()
    private let budgetCounters = InstrumentCache<Counter>()
    private let ejectionCounters = InstrumentCache<Counter>()
    private let overflowCounters = InstrumentCache<Counter>()
    private let gauges = InstrumentCache<Gauge>()
    private let meshCounters = InstrumentCache<Counter>()
    let policyApplied: Counter
    let policyRejected: Counter
    let serviceRestarts: Counter
    let serviceUp: Gauge
    let logLinesShipped: Counter
    let logLinesDropped: Counter
    /// The current leaf certificate: when it expires (Unix seconds) and how long it was issued for.
    let leafExpiry: Gauge
    let leafLifetime: Gauge
    let leafRenewalFailures: Counter

    public init(component: String = "sidecar") {
        registry = MetricsRegistry(component: component)
        policyApplied = registry.counter("policy_applied", help: "Policies applied (from file or registry KV).")
        policyRejected = registry.counter("policy_rejected", help: "Policies rejected as invalid; the previous one stays.")
        serviceRestarts = registry.counter("service_restarts", help: "Restarts of the supervised service process.")
        serviceUp = registry.gauge("service_up", help: "1 while the supervised service process runs.")
        logLinesShipped = registry.counter("log_lines_shipped", help: "Log lines (service output, access log) taken by the collector.")
        leafExpiry = registry.gauge("tls_leaf_expiry_timestamp_seconds", help: "When the sidecar's leaf certificate expires (Unix time; 0: none).")
        leafLifetime = registry.gauge("tls_leaf_lifetime_seconds", help: "How long the sidecar's current leaf certificate was issued for.")
        leafRenewalFailures = registry.counter("tls_leaf_renewal_failures", help: "Failed attempts to fetch the leaf certificate or roots from the registry.")
        logLinesDropped = registry.counter("log_lines_dropped", help: "Log lines dropped: queue full while the collector was unreachable, or refused.")
    }

    /// Instruments of one route, made once when a policy is applied so requests only bump them.
    final class RouteStats {
        /// Indexed by status class 1…5; index 0 counts requests that got no answer (client gone).
        let requests: [Counter]
        let duration: ValueHistogram
        let rateLimited: Counter

        init(_ metrics: SidecarMetrics, direction: String, upstream: String, route: String) {
            let labels = [("direction", direction), ("upstream", upstream), ("route", route)]
            requests = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"].map { code in
                metrics.registry.counter("requests", help: "Requests by direction, upstream, route and status class.",
                                         labels: labels + [("code_class", code)])
            }
            duration = metrics.registry.histogram("request_duration", help: "Time from request head to the end of the response.",
                                                  labels: labels)
            rateLimited = metrics.registry.counter("rate_limited", help: "Requests refused with 429 by a rate limit.", labels: labels)
        }
    }

    /// An answer the sidecar produced itself (502, 503, 504, 429), by reason; the service's own
    /// errors are only in `requests_total`.
    func localResponse(direction: String, upstream: String, reason: String) {
        localResponses.get("\(direction)|\(upstream)|\(reason)") {
            registry.counter("local_responses", help: "Responses produced by the sidecar itself, by reason.",
                             labels: [("direction", direction), ("upstream", upstream), ("reason", reason)])
        }.increment()
    }

    /// A mutual TLS connection established, by direction and whether its session was resumed.
    func tlsHandshake(direction: String, resumed: Bool) {
        meshCounters.get("tls|\(direction)|\(resumed)") {
            registry.counter("tls_handshakes", help: "Mutual TLS connections established, by direction and session resumption.",
                             labels: [("direction", direction), ("resumed", resumed ? "true" : "false")])
        }.increment()
    }

    /// A connection TLS refused or broke (unknown CA, expired, wrong identity, no certificate, plaintext…).
    func tlsHandshakeFailure(direction: String, reason: String) {
        meshCounters.get("tlsfail|\(direction)|\(reason)") {
            registry.counter("tls_handshake_failures", help: "Connections refused or broken by TLS, by direction and reason.",
                             labels: [("direction", direction), ("reason", reason)])
        }.increment()
    }

    /// A request refused because no intention lets its caller (by source service) call this one.
    func authorizationDenied(source: String) {
        meshCounters.get("authz|\(source)") {
            registry.counter("authorization_denials", help: "Inbound requests refused by intentions, by the calling service.",
                             labels: [("source", source)])
        }.increment()
    }

    func retry(upstream: String) { retryCounter(upstream).increment() }
    func retryBudgetExhausted(upstream: String) { budgetCounter(upstream).increment() }
    func ejection(upstream: String) { ejectionCounter(upstream).increment() }
    func breakerOverflow(upstream: String, limit: String) { overflowCounter(upstream, limit).increment() }

    /// Makes an upstream's event counters at zero, so dashboards and alerts see them before the first event.
    func prepare(upstream: String) {
        _ = (retryCounter(upstream), budgetCounter(upstream), ejectionCounter(upstream))
        for limit in ["max_requests", "max_pending_requests"] { _ = overflowCounter(upstream, limit) }
    }

    private func retryCounter(_ upstream: String) -> Counter {
        retryCounters.get(upstream) {
            registry.counter("retries", help: "Attempts retried after a failure.", labels: [("upstream", upstream)])
        }
    }

    private func budgetCounter(_ upstream: String) -> Counter {
        budgetCounters.get(upstream) {
            registry.counter("retry_budget_exhausted", help: "Retries not made because the retry budget was spent.",
                             labels: [("upstream", upstream)])
        }
    }

    private func ejectionCounter(_ upstream: String) -> Counter {
        ejectionCounters.get(upstream) {
            registry.counter("ejections", help: "Instances ejected by outlier detection.", labels: [("upstream", upstream)])
        }
    }

    private func overflowCounter(_ upstream: String, _ limit: String) -> Counter {
        overflowCounters.get("\(upstream)|\(limit)") {
            registry.counter("circuit_breaker_overflows", help: "Requests refused because a circuit breaker limit was reached.",
                             labels: [("upstream", upstream), ("limit", limit)])
        }
    }

    /// Sets a state gauge (refreshed right before each scrape).
    func set(_ name: String, help: String, labels: [(String, String)], to value: Int) {
        let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
        gauges.get(key) { registry.gauge(name, help: help, labels: labels) }.record(Double(value))
    }
}
