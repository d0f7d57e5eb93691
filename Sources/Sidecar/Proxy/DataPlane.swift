import CEventIO
import EventIO
import NIOCore

/// All state of the proxy, confined to its reactor's thread: listeners with their routes,
/// clusters, the applied policy. Updates from discovery and the policy watcher arrive with
/// `reactor.execute`, so the request path takes no locks.
final class DataPlane {
    static let inboundKey = "inbound"

    let reactor: Reactor
    let metrics: SidecarMetrics
    let accessLog: AccessLog
    var random = FastRandom()
    private(set) var policy: SidecarPolicy
    private(set) var listeners: [String: ListenerRuntime] = [:]
    /// Requests in flight on the inbound listener (what draining waits for).
    var inboundInFlight = 0
    var downstreamConnections: [String: Int] = [:]
    /// Set when shutting down: inbound responses ask clients to close their connections.
    var draining = false
    /// Upstream connections written to during this turn of the event loop, flushed after all its
    /// reads: one wake-up of the upstream per turn rather than one per request read.
    private var pendingFlushes: [StreamSocket] = []

    init(reactor: Reactor, policy: SidecarPolicy, upstreams: [String], localEndpoint: EndpointInfo,
         metrics: SidecarMetrics, accessLog: AccessLog) {
        self.reactor = reactor
        self.policy = policy
        self.metrics = metrics
        self.accessLog = accessLog
        let inbound = Cluster(name: "local", policy: policy.inbound, reactor: reactor)
        inbound.update([localEndpoint])
        listeners[Self.inboundKey] = ListenerRuntime(direction: "inbound", cluster: inbound, policy: policy.inbound, metrics: metrics)
        for name in upstreams {
            let cluster = Cluster(name: name, policy: policy.upstream(name), reactor: reactor)
            cluster.onEjection = { [metrics] in metrics.ejection(upstream: name) }
            listeners[name] = ListenerRuntime(direction: "outbound", cluster: cluster, policy: policy.upstream(name), metrics: metrics)
        }
    }

    /// Switches to a new policy in one step: requests in flight finish under the old one,
    /// connections stay open.
    func apply(_ policy: SidecarPolicy) {
        self.policy = policy
        for (key, listener) in listeners {
            listener.apply(key == Self.inboundKey ? policy.inbound : policy.upstream(key), metrics: metrics)
        }
    }

    /// Flushes `socket` once the current turn of the reactor has handled all its reads.
    func flushAfterReads(_ socket: StreamSocket) {
        if pendingFlushes.isEmpty { reactor.atEndOfTurn(flushPending) }
        pendingFlushes.append(socket)
    }

    /// Made once: scheduling it allocates no closure per turn.
    private lazy var flushPending: () -> Void = { [unowned self] in
        for socket in pendingFlushes { socket.flush() }
        pendingFlushes.removeAll(keepingCapacity: true)
    }

    func updateEndpoints(upstream: String, _ endpoints: [EndpointInfo]) {
        listeners[upstream]?.cluster.update(endpoints)
    }

    /// The listening sockets, by listener key.
    private var listening: [String: Listener] = [:]
    private var housekeeping: [RepeatingTimer] = []

    /// Accepts connections for the listener `key` on `host:port` (before the reactor starts, or on
    /// its thread); returns the port, the one the system chose when `port` is 0.
    func listen(_ key: String, host: String, port: Int) throws -> Int {
        let listener = try Listener(host: host, port: port, reactor: reactor) { [unowned self] downstream in
            downstream.delegate = ProxyHandler(plane: self, listenerKey: key, downstream: downstream)
        }
        listening[key] = listener
        return listener.port
    }

    /// Stops accepting for the listener `key`; its connections stay open.
    func stopAccepting(_ key: String) {
        listening[key]?.close()
    }

    /// Flushes the access log every 200 ms; every 5 s closes pooled connections idle for a minute
    /// and hands heap memory freed since (after a burst of connections) back to the system.
    func startHousekeeping() {
        housekeeping = [
            reactor.scheduleRepeating(every: .milliseconds(200)) { [unowned self] in accessLog.flush() },
            reactor.scheduleRepeating(every: .seconds(5)) { [unowned self] in
                sweepIdleConnections(idleTimeout: .seconds(60))
                malloc_trim(0)
            },
        ]
    }

    /// Stops accepting everywhere and ends the housekeeping; connections stay open.
    func stop() {
        for listener in listening.values { listener.close() }
        for timer in housekeeping { timer.cancel() }
        housekeeping = []
    }

    /// Closes pooled connections idle for longer than `idleTimeout`.
    func sweepIdleConnections(idleTimeout: TimeAmount) {
        let cutoff = reactor.now - idleTimeout
        for listener in listeners.values {
            for pool in listener.cluster.allPools { pool.closeIdle(olderThan: cutoff) }
        }
    }
}

/// A listener's live routes and cluster.
final class ListenerRuntime {
    let direction: String
    let cluster: Cluster
    private(set) var defaultRoute: RouteRuntime
    private(set) var routes: [RouteRuntime] = []

    init(direction: String, cluster: Cluster, policy: ListenerPolicy, metrics: SidecarMetrics) {
        self.direction = direction
        self.cluster = cluster
        metrics.prepare(upstream: cluster.name)
        defaultRoute = RouteRuntime(name: "default", match: nil, settings: policy.route, split: [], previous: nil,
                                    stats: .init(metrics, direction: direction, upstream: cluster.name, route: "default"))
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
        routes = policy.routes.map { runtime($0.name, $0.match, $0.settings, $0.split) }
    }

    func route(for head: MessageHead) -> RouteRuntime {
        for route in routes where route.matches(head) { return route }
        return defaultRoute
    }
}

/// One route as the data plane uses it: settings, split, stats and rate limiter.
final class RouteRuntime {
    let name: String
    let match: RouteMatch?
    let settings: RouteSettings
    let split: [SplitTarget]
    private let splitTotal: Int
    let stats: SidecarMetrics.RouteStats
    let rateLimiter: RateLimiter?

    init(name: String, match: RouteMatch?, settings: RouteSettings, split: [SplitTarget], previous: RouteRuntime?,
         stats: SidecarMetrics.RouteStats) {
        self.name = name
        self.match = match
        self.settings = settings
        self.split = split
        self.splitTotal = split.reduce(0) { $0 + $1.weight }
        self.stats = stats
        // An unchanged limit keeps its buckets, so re-applying a policy does not refill them.
        if let limit = settings.rateLimit {
            rateLimiter = previous?.rateLimiter?.policy == limit ? previous!.rateLimiter : RateLimiter(policy: limit)
        } else {
            rateLimiter = nil
        }
    }

    func matches(_ head: MessageHead) -> Bool {
        guard let match else { return true }
        guard head.target.hasPrefix(match.pathPrefix) else { return false }
        if !match.methods.isEmpty && !match.methods.contains(head.method) { return false }
        for header in match.headers {
            guard let value = head.first(name: header.name) else { return false }
            if !header.value.isEmpty && value != header.value { return false }
        }
        return true
    }

    /// The tag subset for one request, drawn by weight; nil means the whole upstream.
    func pickSubset(random: inout FastRandom) -> String? {
        guard splitTotal > 0 else { return nil }
        var point = random.below(splitTotal)
        for target in split {
            if point < target.weight { return target.tag }
            point -= target.weight
        }
        return split.last?.tag
    }
}
