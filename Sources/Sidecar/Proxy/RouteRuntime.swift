import Policy

/// One route as the data plane uses it: match, attempt rules, where it sends, split, stats and
/// rate limiter; on a gateway also its rule's edge stages.
final class RouteRuntime {
    let name: String
    let match: RouteMatch?
    let attemptRules: AttemptRules
    let split: [SplitTarget]
    private let splitTotal: Int
    /// The listener's cluster on a sidecar; a gateway rule's backends, drawn by weight.
    let backends: [(cluster: Cluster, weight: Int)]
    private let backendTotal: Int
    /// Matches, rewrite, authentication, CORS and body limit of a gateway rule; nil on a sidecar.
    let edge: EdgeRoute?
    let stats: SidecarMetrics.RouteStats
    let rateLimiter: RateLimiter?

    /// `sharedLimiter`: the rule's buckets a gateway's workers share (instead of their own).
    init(name: String, match: RouteMatch?, settings: RouteSettings, split: [SplitTarget], backends: [(cluster: Cluster, weight: Int)],
         edge: EdgeRoute? = nil, sharedLimiter: RateLimiter? = nil, previous: RouteRuntime?, stats: SidecarMetrics.RouteStats) {
        self.name = name
        self.match = match
        self.attemptRules = AttemptRules(settings)
        self.split = split
        self.splitTotal = split.reduce(0) { $0 + $1.weight }
        self.backends = backends
        self.backendTotal = backends.reduce(0) { $0 + $1.weight }
        self.edge = edge
        self.stats = stats
        // An unchanged limit keeps its buckets, so re-applying a policy does not refill them.
        if let sharedLimiter {
            rateLimiter = sharedLimiter
        } else if let limit = settings.rateLimit {
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

    /// The cluster for one request: the only one, or one drawn by the backends' weights.
    func pickCluster(random: inout FastRandom) -> Cluster {
        guard backends.count > 1 else { return backends[0].cluster }
        var point = random.below(backendTotal)
        for backend in backends {
            if point < backend.weight { return backend.cluster }
            point -= backend.weight
        }
        return backends[backends.count - 1].cluster
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
