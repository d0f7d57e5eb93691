import NIOCore
import Policy

/// The first stage of the request path: the route's rate limit and the cluster's circuit breaker
/// limit on active requests. An admitted request counts as active until the handler books it.
enum Admission {
    enum Verdict {
        /// `rateLimitHeaders`: the `X-RateLimit-*` lines for the response, when the route is limited.
        case admitted(rateLimitHeaders: ByteBuffer?)
        /// Answered by the sidecar; the headers go on the answer too.
        case refused(LocalAnswer, rateLimitHeaders: ByteBuffer?)
    }

    /// `client` is the source address; `clientID` the caller a gateway verified, if any.
    static func admit(_ head: MessageHead, route: RouteRuntime, cluster: Cluster, client: String, clientID: String? = nil,
                      now: NIODeadline, metrics: SidecarMetrics, allocator: ByteBufferAllocator) -> Verdict {
        var headers: ByteBuffer?
        if let limiter = route.rateLimiter {
            let decision = limiter.take(key: rateLimitKey(limiter.policy.key, head, client: client, clientID: clientID), at: now)
            headers = rateLimitLines(limiter.policy, decision, allocator: allocator)
            if !decision.allowed {
                route.stats.rateLimited.increment()
                return .refused(LocalAnswer(status: .tooManyRequests, reason: "rate_limited",
                                            message: "rate limit of route \(route.name) exceeded"), rateLimitHeaders: headers)
            }
        }
        let limits = cluster.limits
        guard limits.activeRequests < limits.policy.maxRequests else {
            metrics.breakerOverflow(upstream: cluster.name, limit: "max_requests")
            let message = "upstream \(cluster.name): too many active requests (circuit breaker max_requests \(limits.policy.maxRequests))"
            return .refused(LocalAnswer(status: .serviceUnavailable, reason: "overflow", message: message), rateLimitHeaders: headers)
        }
        limits.activeRequests += 1
        return .admitted(rateLimitHeaders: headers)
    }

    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset`, and `Retry-After` when refused.
    private static func rateLimitLines(_ policy: RateLimitPolicy, _ decision: RateLimiter.Decision, allocator: ByteBufferAllocator) -> ByteBuffer {
        var headers = allocator.buffer(capacity: 96)
        HeaderRules.writeLine("X-RateLimit-Limit", String(policy.requests), to: &headers)
        HeaderRules.writeLine("X-RateLimit-Remaining", String(decision.remaining), to: &headers)
        HeaderRules.writeLine("X-RateLimit-Reset", String(Int(decision.resetAfter.rounded(.up))), to: &headers)
        if !decision.allowed {
            HeaderRules.writeLine("Retry-After", String(max(1, Int(decision.retryAfter.rounded(.up)))), to: &headers)
        }
        return headers
    }

    private static func rateLimitKey(_ key: RateLimitPolicy.Key, _ head: MessageHead, client: String, clientID: String?) -> String {
        switch key {
        case .none: ""
        case .source: client
        case .client: clientID.map { "id:" + $0 } ?? client
        case .header(let name): head.first(name: name) ?? ""
        }
    }
}
