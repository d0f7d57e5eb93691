import NIOCore
import Policy
import Synchronization

/// Token buckets for one route, one per client key. Behind a lock: a gateway's workers share
/// the buckets of a rule, so that a limit holds whichever event loop serves the client.
final class RateLimiter: Sendable {
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
    private let buckets = Mutex<[String: Bucket]>([:])
    /// Beyond this many keys the idle full buckets are dropped, so random keys cannot grow memory.
    private let maxKeys = 100_000

    init(policy: RateLimitPolicy) { self.policy = policy }

    func take(key: String, at now: NIODeadline) -> Decision {
        buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: Double(policy.burst), updated: now)
            // Workers read their own clocks: a reading a little behind the last one adds nothing.
            let elapsed = Double((now - bucket.updated).nanoseconds) / 1e9
            bucket.tokens = min(Double(policy.burst), bucket.tokens + max(0, elapsed) * policy.rate)
            bucket.updated = max(bucket.updated, now)
            let allowed = bucket.tokens >= 1
            if allowed { bucket.tokens -= 1 }
            if buckets.count >= maxKeys && buckets[key] == nil { evictFullBuckets(&buckets, now) }
            buckets[key] = bucket
            return decision(bucket, allowed: allowed)
        }
    }

    private func decision(_ bucket: Bucket, allowed: Bool) -> Decision {
        Decision(allowed: allowed, remaining: Int(bucket.tokens),
                 retryAfter: allowed ? 0 : (1 - bucket.tokens) / policy.rate,
                 resetAfter: (Double(policy.burst) - bucket.tokens) / policy.rate)
    }

    private func evictFullBuckets(_ buckets: inout [String: Bucket], _ now: NIODeadline) {
        let refill = Double(policy.burst) / policy.rate
        buckets = buckets.filter { Double((now - $0.value.updated).nanoseconds) / 1e9 < refill }
        if buckets.count >= maxKeys { buckets.removeAll(keepingCapacity: true) }
    }
}
