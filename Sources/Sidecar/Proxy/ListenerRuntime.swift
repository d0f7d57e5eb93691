import Policy

/// Names a data-plane listener: the inbound one, or the outbound one of an upstream. A type of its
/// own, so that the inbound listener and an upstream can never take each other's place.
enum ListenerKey: Hashable, CustomStringConvertible {
    case inbound
    case upstream(String)

    var description: String {
        switch self {
        case .inbound: SidecarPolicy.inboundListenerName
        case .upstream(let name): name
        }
    }
}

/// A listener's live routes and cluster.
final class ListenerRuntime {
    let direction: String
    let cluster: Cluster
    private(set) var defaultRoute: RouteRuntime
    private(set) var routes: [RouteRuntime] = []
    /// What a connection's request state is between requests: nothing of the last one.
    private(set) var idleRequest: ProxyRequest

    init(direction: String, cluster: Cluster, policy: ListenerPolicy, metrics: SidecarMetrics) {
        self.direction = direction
        self.cluster = cluster
        metrics.prepare(upstream: cluster.name)
        defaultRoute = RouteRuntime(name: "default", match: nil, settings: policy.route, split: [], previous: nil,
                                    stats: .init(metrics, direction: direction, upstream: cluster.name, route: "default"))
        idleRequest = ProxyRequest(idleOn: defaultRoute, upstream: cluster.name)
        apply(policy, metrics: metrics)
    }

    func apply(_ policy: ListenerPolicy, metrics: SidecarMetrics) {
        cluster.apply(policy)
        let old = [defaultRoute] + routes
        func runtime(_ name: String, _ match: RouteMatch?, _ settings: RouteSettings, _ split: [SplitTarget]) -> RouteRuntime {
            let previous = old.first { $0.name == name }
            return RouteRuntime(name: name, match: match, settings: settings, split: split, previous: previous,
                                stats: previous?.stats ?? .init(metrics, direction: direction, upstream: cluster.name, route: name))
        }
        defaultRoute = runtime("default", nil, policy.route, [])
        idleRequest = ProxyRequest(idleOn: defaultRoute, upstream: cluster.name)
        routes = policy.routes.map { runtime($0.name, $0.match, $0.settings, $0.split) }
    }

    func route(for head: MessageHead) -> RouteRuntime {
        for route in routes where route.matches(head) { return route }
        return defaultRoute
    }
}
