import NIOCore
import Policy

/// Keeps retries below a share of requests over a sliding window (Linkerd's retry budget), so a
/// failing upstream sees at most `1 + percent/100` times the load instead of `1 + attempts` times.
struct RetryBudget {
    private var requests: [Int]
    private var retries: [Int]
    private var bucketSeconds: [Int64]

    init(window: TimeAmount) {
        let buckets = max(1, Int(window.nanoseconds / 1_000_000_000))
        requests = Array(repeating: 0, count: buckets)
        retries = requests
        bucketSeconds = Array(repeating: -1, count: buckets)
    }

    mutating func recordRequest(at now: NIODeadline) {
        requests[bucket(now)] += 1
    }

    /// Spends one retry if the budget allows it.
    mutating func tryRetry(_ policy: RetryBudgetPolicy, at now: NIODeadline) -> Bool {
        let current = bucket(now)
        let windowSeconds = Double(requests.count)
        let allowed = Double(requests.reduce(0, +)) * policy.percent / 100 + policy.minRetriesPerSecond * windowSeconds
        guard Double(retries.reduce(0, +)) < allowed else { return false }
        retries[current] += 1
        return true
    }

    /// The bucket of this second, cleared if it still holds an older second.
    private mutating func bucket(_ now: NIODeadline) -> Int {
        let second = now.uptimeNanoseconds / 1_000_000_000
        let index = Int(second % UInt64(requests.count))
        if bucketSeconds[index] != Int64(second) {
            bucketSeconds[index] = Int64(second)
            requests[index] = 0
            retries[index] = 0
        }
        return index
    }
}

/// Exponential backoff with full jitter: a uniform wait in [0, min(max, base × 2^retry)].
enum Backoff {
    static func delay(retry: Int, base: TimeAmount, max: TimeAmount, random: inout FastRandom) -> TimeAmount {
        let ceiling = min(max.nanoseconds, base.nanoseconds << min(retry, 20))
        guard ceiling > 0 else { return .zero }
        return .nanoseconds(Int64(random.unit() * Double(ceiling)))
    }
}
