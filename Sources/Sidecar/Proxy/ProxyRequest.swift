import NIOCore

/// Everything the request in flight on a downstream connection holds, in one place: the handler
/// starts a request by assigning one and forgets all of it by assigning nil. A class, so that the
/// handler reaches its fields through a plain reference (an optional struct this size costs a
/// call per access to find out whether it is there).
final class ProxyRequest {
    let head: MessageHead
    let route: RouteRuntime
    let started: NIODeadline
    var machine: AttemptMachine<Endpoint>
    /// The client's connection may stay open: it asked for that and the sidecar is not draining.
    var keepAlive: Bool
    /// The request's last byte was read.
    var bodyEnded: Bool
    /// Counted as active against the cluster's circuit breaker until booked.
    var admitted = false
    /// `X-RateLimit-*` header lines for the response, when the route is rate limited.
    var rateLimitHeaders: ByteBuffer?
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

    init(head: MessageHead, route: RouteRuntime, upstream: String, keepAlive: Bool, bodyEnded: Bool) {
        self.head = head
        self.route = route
        self.started = .now()
        self.machine = AttemptMachine(upstream: upstream, rules: route.attemptRules, idempotent: head.isIdempotent)
        self.keepAlive = keepAlive
        self.bodyEnded = bodyEnded
    }
}
