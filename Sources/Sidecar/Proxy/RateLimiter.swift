import NIOCore
import Policy

/// Token buckets for one route, one per client key. Confined to the data-plane event loop.
final class RateLimiter {
    struct Decision {
        var allowed: Bool
        var remaining: Int
        /// Seconds until the next token (for `Retry-After`).
        var retryAfter: Double
        /// Seconds until the bucket is full again (for `X-RateLimit-Reset`).
        var resetAfter: Double
    }

    private struct Bucket {
        var tokens: Double
        var updated: NIODeadline
    }

    let policy: RateLimitPolicy
    private var buckets: [String: Bucket] = [:]
    /// Beyond this many keys the idle full buckets are dropped, so random keys cannot grow memory.
    private let maxKeys = 100_000

    init(policy: RateLimitPolicy) { self.policy = policy }

    func take(key: String, at now: NIODeadline) -> Decision {
        var bucket = buckets[key] ?? Bucket(tokens: Double(policy.burst), updated: now)
        let elapsed = Double((now - bucket.updated).nanoseconds) / 1e9
        bucket.tokens = min(Double(policy.burst), bucket.tokens + max(0, elapsed) * policy.rate)
        bucket.updated = now
        let allowed = bucket.tokens >= 1
        if allowed { bucket.tokens -= 1 }
        if buckets.count >= maxKeys && buckets[key] == nil { evictFullBuckets(now) }
        buckets[key] = bucket
        return Decision(allowed: allowed, remaining: Int(bucket.tokens),
                        retryAfter: allowed ? 0 : (1 - bucket.tokens) / policy.rate,
                        resetAfter: (Double(policy.burst) - bucket.tokens) / policy.rate)
    }

    private func evictFullBuckets(_ now: NIODeadline) {
        let refill = Double(policy.burst) / policy.rate
        buckets = buckets.filter { Double((now - $0.value.updated).nanoseconds) / 1e9 < refill }
        if buckets.count >= maxKeys { buckets.removeAll(keepingCapacity: true) }
    }
}
