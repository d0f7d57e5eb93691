import CEventIO
import EventIO
import Logging
import NIOCore
import Policy

/// All state of the proxy, confined to its reactor's thread: listeners with their routes,
/// clusters, the applied policy. Updates from discovery and the policy watcher arrive with
/// `reactor.execute`, so the request path takes no locks.
final class DataPlane {
    let reactor: Reactor
    let metrics: SidecarMetrics
    let accessLog: AccessLog
    var random = FastRandom()
    private(set) var policy: SidecarPolicy
    private(set) var listeners: [ListenerKey: ListenerRuntime] = [:]
    /// Requests in flight on the inbound listener, or a gateway's edge listener (what draining waits for).
    var inFlight = 0
    var downstreamConnections: [ListenerKey: Int] = [:]
    /// Set when shutting down: inbound responses ask clients to close their connections.
    var draining = false
    /// Upstream connections written to during this turn of the event loop, flushed after all its
    /// reads: one wake-up of the upstream per turn rather than one per request read.
    private var pendingFlushes: [StreamSocket] = []

    /// The deadlines of client connections outside their requests.
    let connectionTimeouts: ConnectionTimeouts
    /// Mutual TLS: the inbound mode, the contexts of the current identity, the intentions.
    let mesh: MeshTLS
    /// A gateway's credentials checks (unused by a sidecar).
    let edgeAuth = EdgeAuthenticator()
    /// TLS on a gateway's public listener, when it terminates TLS.
    var edgeTLS: TLSContext?

    init(reactor: Reactor, policy: SidecarPolicy, upstreams: [String], localEndpoint: EndpointInfo,
         metrics: SidecarMetrics, accessLog: AccessLog, connectionTimeouts: ConnectionTimeouts = ConnectionTimeouts(),
         mtls: MTLSMode = .off) {
        self.reactor = reactor
        self.mesh = MeshTLS(mode: mtls, metrics: metrics)
        self.connectionTimeouts = connectionTimeouts
        self.policy = policy
        self.metrics = metrics
        self.accessLog = accessLog
        let inbound = Cluster(name: "local", policy: policy.inbound, reactor: reactor)
        inbound.update([localEndpoint])
        listeners[.inbound] = ListenerRuntime(direction: "inbound", cluster: inbound, policy: policy.inbound, metrics: metrics)
        for name in upstreams {
            let cluster = Cluster(name: name, policy: policy.upstream(name), reactor: reactor, mesh: mesh)
            cluster.onEjection = { [metrics] in metrics.ejection(upstream: name) }
            listeners[.upstream(name)] = ListenerRuntime(direction: "outbound", cluster: cluster, policy: policy.upstream(name), metrics: metrics)
        }
    }

    /// A gateway's data plane: the public listener `.edge` and one cluster (an unbound upstream
    /// listener) per backend service of `gateway`'s rules.
    init(reactor: Reactor, gateway: GatewayPolicy, keys: [String: [VerificationKey]], limiters: [String: RateLimiter],
         metrics: SidecarMetrics, accessLog: AccessLog, connectionTimeouts: ConnectionTimeouts = ConnectionTimeouts()) {
        self.reactor = reactor
        self.mesh = MeshTLS(mode: .off, metrics: metrics)
        self.connectionTimeouts = connectionTimeouts
        self.policy = SidecarPolicy(defaults: gateway.backends)
        self.metrics = metrics
        self.accessLog = accessLog
        listeners[.edge] = ListenerRuntime(edge: gateway, clusters: [:], limiters: limiters, reactor: reactor, metrics: metrics)
        apply(gateway: gateway, keys: keys, limiters: limiters)
    }

    /// Switches to a new policy in one step: requests in flight finish under the old one,
    /// connections stay open.
    func apply(_ policy: SidecarPolicy) {
        self.policy = policy
        for (key, listener) in listeners {
            switch key {
            case .inbound: listener.apply(policy.inbound, metrics: metrics)
            case .upstream(let name): listener.apply(policy.upstream(name), metrics: metrics)
            case .edge: break
            }
        }
    }

    /// A gateway's new policy, in one step: clusters for backends it names first (kept for those
    /// it keeps, given `endpoints` when new), then its rules. Clusters of backends no rule names
    /// any more stay until restart (their connections close when idle). Nil `keys`: the same
    /// token issuers and keys as before (only the limits' shares changed).
    func apply(gateway: GatewayPolicy, keys: [String: [VerificationKey]]?, limiters: [String: RateLimiter],
               endpoints: [String: [EndpointInfo]] = [:]) {
        policy = SidecarPolicy(defaults: gateway.backends)
        if let keys { edgeAuth.apply(gateway, keys: keys) }
        for service in gateway.backendServices where listeners[.upstream(service)] == nil {
            let cluster = Cluster(name: service, policy: gateway.backends, reactor: reactor, mesh: mesh)
            cluster.onEjection = { [metrics] in metrics.ejection(upstream: service) }
            listeners[.upstream(service)] = ListenerRuntime(direction: "outbound", cluster: cluster, policy: gateway.backends, metrics: metrics)
            if let known = endpoints[service] { cluster.update(known) }
        }
        for (key, listener) in listeners { if case .upstream = key { listener.apply(gateway.backends, metrics: metrics) } }
        var clusters: [String: Cluster] = [:]
        for (key, listener) in listeners { if case .upstream(let name) = key { clusters[name] = listener.cluster } }
        listeners[.edge]?.apply(edge: gateway, clusters: clusters, limiters: limiters, metrics: metrics)
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

    /// Installs a new leaf and roots; one that does not load is logged and the current one stays.
    func install(_ identity: MeshIdentity, logger: Logger) {
        do { try mesh.install(identity) } catch {
            logger.error("certificate refused; keeping the current one", metadata: ["error": "\(error)"])
        }
    }

    func updateEndpoints(upstream: String, _ endpoints: [EndpointInfo]) {
        listeners[.upstream(upstream)]?.cluster.update(endpoints)
    }

    /// The listening sockets, by listener key.
    private var listening: [ListenerKey: Listener] = [:]
    private var housekeeping: [RepeatingTimer] = []

    /// Accepts connections for the listener `key` on `host:port` (before the reactor starts, or on
    /// its thread); returns the port, the one the system chose when `port` is 0.
    func listen(_ key: ListenerKey, host: String, port: Int, reusePort: Bool = false) throws -> Int {
        let listener = try Listener(host: host, port: port, reusePort: reusePort, reactor: reactor) { [unowned self] downstream in
            if key == .inbound {
                guard mesh.secureInbound(downstream) else { return downstream.close() }
            }
            if key == .edge, let edgeTLS {
                do { try downstream.startTLS(edgeTLS) } catch { return downstream.close() }
            }
            downstream.delegate = ProxyHandler(plane: self, listenerKey: key, downstream: downstream)
        }
        listening[key] = listener
        return listener.port
    }

    /// Stops accepting for the listener `key`; its connections stay open.
    func stopAccepting(_ key: ListenerKey) {
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
