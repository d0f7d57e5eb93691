import NIOCore

/// Everything the request in flight on a downstream connection holds, as one value: the handler
/// starts a request with one assignment and forgets all of it with another (of its idle value),
/// so an idle keep-alive connection keeps nothing of its last request. Stored in place in the
/// handler, neither optional nor an object: no allocation, reference counting or presence test
/// per access on the request path.
struct ProxyRequest {
    /// False for the idle value between requests.
    let isActive: Bool
    let head: MessageHead
    let route: RouteRuntime
    /// Where the request goes: the route's cluster, or on a gateway the backend drawn for it.
    let cluster: Cluster
    let started: NIODeadline
    var machine: AttemptMachine<Endpoint>
    /// The client's connection may stay open: it asked for that and the sidecar is not draining.
    var keepAlive: Bool
    /// The request's last byte was read.
    var bodyEnded: Bool
    /// Counted as active against the cluster's circuit breaker until booked.
    var admitted = false
    /// Header lines the proxy adds to the response: `X-RateLimit-*` when the route is rate
    /// limited, CORS on a gateway.
    var responseHeaders: ByteBuffer?
    /// The caller a gateway verified (a token's subject, an API key's name).
    var clientID: String?
    /// The canary tag subset drawn for this request; nil is the whole upstream.
    var subset: String?
    var trace: TraceContext?
    var upstreamHead: ByteBuffer?

    // The attempt in flight.
    var endpoint: Endpoint?
    var connection: UpstreamConnection?
    /// The attempt's place in its pool's queue, while it waits for a connection.
    var waiter: Int?

    // The response.
    var status = 0
    var bytesSent = 0
    var responseKeepsOpen = true
    /// The response head with the first small body parts appended (one write for a small
    /// response), or the whole response while the machine holds it.
    var responseStart: ByteBuffer?

    init(head: MessageHead, route: RouteRuntime, cluster: Cluster, keepAlive: Bool, bodyEnded: Bool) {
        self.isActive = true
        self.head = head
        self.route = route
        self.cluster = cluster
        self.started = .now()
        self.machine = AttemptMachine(upstream: cluster.name, rules: route.attemptRules, idempotent: head.isIdempotent)
        self.keepAlive = keepAlive
        self.bodyEnded = bodyEnded
    }

    /// The value between requests, on a listener whose default route is `route`.
    init(idleOn route: RouteRuntime, cluster: Cluster) {
        isActive = false
        head = MessageHead(bytes: ByteBuffer(), fields: [], minorVersion: 1, first: 0..<0, second: 0..<0, status: 0, body: .none,
                           keepAlive: false, connectionNamed: [])
        self.route = route
        self.cluster = cluster
        started = .uptimeNanoseconds(0)
        machine = AttemptMachine(upstream: cluster.name, rules: route.attemptRules, idempotent: false)
        keepAlive = false
        bodyEnded = true
    }
}
