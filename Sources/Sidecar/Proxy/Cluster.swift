import EventIO
import NIOCore
import Policy

/// The instances of one upstream (or the local service for inbound traffic), with their pools,
/// balancer state, circuit breaker counts, retry budget and outlier detection.
/// Confined to the data-plane reactor.
final class Cluster {
    let name: String
    private let reactor: Reactor
    private(set) var policy: ListenerPolicy
    let limits: ClusterLimits
    var retryBudget: RetryBudget
    private(set) var endpoints: [Endpoint] = []
    /// Instances that left the cluster but still have requests or connections in flight.
    private var retired: [Endpoint] = []
    private var rings: [String: HashRing] = [:]
    /// Called when outlier detection ejects an instance.
    var onEjection: () -> Void = {}
    /// Mutual TLS to instances that take it (upstreams); nil for the local service.
    private let mesh: MeshTLS?

    init(name: String, policy: ListenerPolicy, reactor: Reactor, mesh: MeshTLS? = nil) {
        self.name = name
        self.mesh = mesh
        self.reactor = reactor
        self.policy = policy
        self.limits = ClusterLimits(policy: policy.circuitBreaker)
        self.retryBudget = RetryBudget(window: policy.route.retries.budget.window)
    }

    func apply(_ policy: ListenerPolicy) {
        if policy.route.retries.budget.window != self.policy.route.retries.budget.window {
            retryBudget = RetryBudget(window: policy.route.retries.budget.window)
        }
        self.policy = policy
        limits.policy = policy.circuitBreaker
    }

    /// Replaces the instance set, keeping the statistics and pools of instances that stay.
    func update(_ infos: [EndpointInfo]) {
        var kept: [Endpoint] = []
        var byKey: [String: Endpoint] = [:]
        for endpoint in endpoints { byKey[endpoint.info.id + "@" + endpoint.info.address] = endpoint }
        for info in infos {
            if let existing = byKey.removeValue(forKey: info.id + "@" + info.address) {
                existing.update(info)
                kept.append(existing)
            } else {
                kept.append(Endpoint(info: info, pool: ConnectionPool(target: info, service: name, reactor: reactor, limits: limits, mesh: mesh)))
            }
        }
        for gone in byKey.values {
            gone.pool.retired = true
            retired.append(gone)
        }
        retired.removeAll { $0.pool.openConnections == 0 && $0.activeRequests == 0 }
        endpoints = kept
        rings = [:]
    }

    /// Instances a new attempt may go to: in the subset, not ejected, not tried yet — relaxing the
    /// last two rules when nothing would be left (better a suspect instance than no answer).
    func candidates(tag: String?, tried: TriedInstances<Endpoint>, now: NIODeadline) -> [Endpoint] {
        // The common case allocates nothing: whole cluster, first attempt, nobody ejected.
        if tag == nil && tried.isEmpty && !endpoints.contains(where: { $0.isEjected(at: now) }) { return endpoints }
        let subset = tag.map { tag in endpoints.filter { $0.info.tags.contains(tag) } } ?? endpoints
        guard !subset.isEmpty else { return [] }
        let healthy = subset.filter { !$0.isEjected(at: now) }
        let pool = healthy.isEmpty ? subset : healthy
        let untried = pool.filter { !tried.contains($0) }
        return untried.isEmpty ? pool : untried
    }

    func pick(tag: String?, hashKey: String?, tried: TriedInstances<Endpoint>, now: NIODeadline, random: inout FastRandom) -> Endpoint? {
        let candidates = candidates(tag: tag, tried: tried, now: now)
        return LoadBalancer.pick(policy.loadBalancer.kind, from: candidates, hashKey: hashKey, ring: { ring(for: tag) }, random: &random)
    }

    private func ring(for tag: String?) -> HashRing {
        let key = tag ?? ""
        if let ring = rings[key] { return ring }
        let ring = HashRing(tag.map { tag in endpoints.filter { $0.info.tags.contains(tag) } } ?? endpoints)
        rings[key] = ring
        return ring
    }

    /// Feeds outlier detection: consecutive errors eject an instance for an exponentially
    /// growing time, unless that would eject more than the allowed share of the cluster.
    func record(_ endpoint: Endpoint, failed: Bool, now: NIODeadline) {
        if failed { endpoint.failures += 1 }
        let detection = policy.outlierDetection
        guard detection.enabled else { return }
        guard failed else {
            endpoint.consecutiveErrors = 0
            return
        }
        endpoint.consecutiveErrors += 1
        guard endpoint.consecutiveErrors >= detection.consecutiveErrors, !endpoint.isEjected(at: now) else { return }
        let ejected = endpoints.filter { $0.isEjected(at: now) }.count
        guard (ejected + 1) * 100 <= detection.maxEjectionPercent * endpoints.count else { return }
        let factor = Int64(1) << min(endpoint.ejections, 30)
        let time = min(detection.baseEjectionTime.nanoseconds * factor, detection.maxEjectionTime.nanoseconds)
        endpoint.ejections += 1
        endpoint.consecutiveErrors = 0
        endpoint.ejectedUntil = now + .nanoseconds(time)
        onEjection()
    }

    func ejectedCount(now: NIODeadline) -> Int { endpoints.filter { $0.isEjected(at: now) }.count }

    var allPools: [ConnectionPool] { (endpoints + retired).map(\.pool) }
}
