import EventIO
import Policy

/// Names a data-plane listener: the inbound one, the outbound one of an upstream, or a gateway's
/// public one. A type of its own, so that listeners can never take each other's place.
enum ListenerKey: Hashable, CustomStringConvertible {
    case inbound
    case upstream(String)
    case edge

    var description: String {
        switch self {
        case .inbound: SidecarPolicy.inboundListenerName
        case .upstream(let name): name
        case .edge: "edge"
        }
    }
}

/// A listener's live routes and cluster.
final class ListenerRuntime {
    let direction: String
    /// The cluster every route sends to. On a gateway's edge listener, whose rules name their
    /// backends, it is the empty cluster `none` of requests that match no rule.
    let cluster: Cluster
    private(set) var defaultRoute: RouteRuntime
    private(set) var routes: [RouteRuntime] = []
    /// What a connection's request state is between requests: nothing of the last one.
    private(set) var idleRequest: ProxyRequest
    /// A gateway's public listener, whose routes are its rules.
    let isEdge: Bool

    init(direction: String, cluster: Cluster, policy: ListenerPolicy, metrics: SidecarMetrics) {
        self.direction = direction
        self.cluster = cluster
        isEdge = false
        metrics.prepare(upstream: cluster.name)
        defaultRoute = RouteRuntime(name: "default", match: nil, settings: policy.route, split: [], backends: [(cluster, 1)], previous: nil,
                                    stats: .init(metrics, direction: direction, upstream: cluster.name, route: "default"))
        idleRequest = ProxyRequest(idleOn: defaultRoute, cluster: cluster)
        apply(policy, metrics: metrics)
    }

    /// A gateway's public listener: one route per rule, sending to the rule's backends among `clusters`.
    init(edge policy: GatewayPolicy, clusters: [String: Cluster], limiters: [String: RateLimiter], reactor: Reactor, metrics: SidecarMetrics) {
        direction = "edge"
        isEdge = true
        cluster = Cluster(name: "none", policy: policy.backends, reactor: reactor)
        defaultRoute = RouteRuntime(name: "no_route", match: nil, settings: policy.backends.route, split: [], backends: [(cluster, 1)],
                                    previous: nil, stats: .init(metrics, direction: direction, upstream: "none", route: "no_route"))
        idleRequest = ProxyRequest(idleOn: defaultRoute, cluster: cluster)
        apply(edge: policy, clusters: clusters, limiters: limiters, metrics: metrics)
    }

    func apply(_ policy: ListenerPolicy, metrics: SidecarMetrics) {
        cluster.apply(policy)
        let old = [defaultRoute] + routes
        func runtime(_ name: String, _ match: RouteMatch?, _ settings: RouteSettings, _ split: [SplitTarget]) -> RouteRuntime {
            let previous = old.first { $0.name == name }
            return RouteRuntime(name: name, match: match, settings: settings, split: split, backends: [(cluster, 1)], previous: previous,
                                stats: previous?.stats ?? .init(metrics, direction: direction, upstream: cluster.name, route: name))
        }
        defaultRoute = runtime("default", nil, policy.route, [])
        idleRequest = ProxyRequest(idleOn: defaultRoute, cluster: cluster)
        routes = policy.routes.map { runtime($0.name, $0.match, $0.settings, $0.split) }
    }

    /// Rebuilds the gateway's routes from its rules; a rule keeps its stats, and takes its
    /// rate-limit buckets from `limiters` (shared by the workers, by rule name).
    func apply(edge policy: GatewayPolicy, clusters: [String: Cluster], limiters: [String: RateLimiter], metrics: SidecarMetrics) {
        let old = routes
        routes = policy.rules.map { rule in
            let previous = old.first { $0.name == rule.name }
            let backends = rule.backends.compactMap { ref in clusters[ref.service].map { (cluster: $0, weight: ref.weight) } }
            let upstream = rule.backends.first?.service ?? "none"
            // Stats are labelled with the first backend: a rule that now sends elsewhere counts anew.
            let stats = previous.flatMap { $0.backends.first?.cluster.name == upstream ? $0.stats : nil }
            return RouteRuntime(name: rule.name, match: nil, settings: rule.settings, split: [], backends: backends, edge: EdgeRoute(rule),
                                sharedLimiter: limiters[rule.name], previous: previous,
                                stats: stats ?? .init(metrics, direction: direction, upstream: upstream, route: rule.name))
        }
    }

    func route(for head: MessageHead) -> RouteRuntime {
        if isEdge {
            // A CORS preflight selects the rule of the request it announces.
            let method = CORS.isPreflight(head) ? (head.first(name: "access-control-request-method") ?? "").uppercased() : head.method
            for route in routes where route.edge?.matches(head, method: method) == true { return route }
            return defaultRoute
        }
        for route in routes where route.matches(head) { return route }
        return defaultRoute
    }
}
