import Policy

/// One route as the data plane uses it: match, attempt rules, split, stats and rate limiter.
final class RouteRuntime {
    let name: String
    let match: RouteMatch?
    let attemptRules: AttemptRules
    let split: [SplitTarget]
    private let splitTotal: Int
    let stats: SidecarMetrics.RouteStats
    let rateLimiter: RateLimiter?

    init(name: String, match: RouteMatch?, settings: RouteSettings, split: [SplitTarget], previous: RouteRuntime?,
         stats: SidecarMetrics.RouteStats) {
        self.name = name
        self.match = match
        self.attemptRules = AttemptRules(settings)
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
