// Policy: the sidecar policy model (routes, timeouts, retries, limits, breakers) and its YAML
// parser, shared by the sidecar, `trellis up` and the CLI.

import NIOCore
import TrellisCore

/// Everything a sidecar applies to its traffic: inbound settings and one policy per upstream.
///
/// Stored as YAML in the registry KV under `trellis/policies/<service>`; see `policies/README.md`.
public struct SidecarPolicy: Sendable, Equatable {
    public var service: String?
    public var inbound: ListenerPolicy
    /// Applies to every upstream that has no entry in `upstreams`.
    public var defaults: ListenerPolicy
    /// Per upstream, already merged over `defaults`.
    public var upstreams: [String: ListenerPolicy]

    public init(service: String? = nil, inbound: ListenerPolicy = .inboundDefault,
                defaults: ListenerPolicy = .outboundDefault, upstreams: [String: ListenerPolicy] = [:]) {
        self.service = service
        self.inbound = inbound
        self.defaults = defaults
        self.upstreams = upstreams
    }

    public func upstream(_ name: String) -> ListenerPolicy { upstreams[name] ?? defaults }

    /// How the sidecar's inbound listener is named where upstreams are named too (`/clusters`,
    /// access logs), so no upstream may take that name.
    public static let inboundListenerName = "inbound"

    /// The registry KV key holding the policy of `service`.
    public static func key(for service: String) -> String { "trellis/policies/\(service)" }

    /// The registry API path of that key (`/v1/kv/trellis/policies/<service>`).
    public static func kvPath(for service: String) -> String {
        "/v1/kv/" + URLPath.escape(key(for: service), keepingSlashes: true)
    }
}

/// The policy of one listener: how its cluster is balanced and protected, and its routes.
public struct ListenerPolicy: Sendable, Equatable {
    public var loadBalancer: LoadBalancerPolicy
    public var circuitBreaker: CircuitBreakerPolicy
    public var outlierDetection: OutlierDetectionPolicy
    /// Settings of requests that match no route.
    public var route: RouteSettings
    /// Tried in order; the first match wins.
    public var routes: [Route]

    public static let outboundDefault = ListenerPolicy(
        loadBalancer: .init(), circuitBreaker: .init(), outlierDetection: .init(),
        route: RouteSettings(timeouts: .init(), retries: .init(), rateLimit: nil), routes: [])

    /// Inbound traffic goes to the one local process: no retries but on connect failure (the
    /// service restarting), no ejection.
    public static let inboundDefault = ListenerPolicy(
        loadBalancer: .init(), circuitBreaker: .init(), outlierDetection: .init(enabled: false),
        route: RouteSettings(timeouts: .init(), retries: RetryPolicy(attempts: 2, conditions: [.connectFailure]), rateLimit: nil),
        routes: [])
}

public struct Route: Sendable, Equatable {
    public var name: String
    public var match: RouteMatch
    public var settings: RouteSettings
    /// Weighted subsets of the upstream by tag; empty means the whole upstream.
    public var split: [SplitTarget]
}

public struct RouteMatch: Sendable, Equatable {
    public var pathPrefix: String = "/"
    public var methods: [String] = []
    /// Header name (lowercased) and exact value; an empty value only asks for presence.
    public var headers: [HeaderMatch] = []

    public struct HeaderMatch: Sendable, Equatable {
        public var name: String
        public var value: String
    }
}

public struct SplitTarget: Sendable, Equatable {
    public var weight: Int
    /// Instances carrying this tag; nil is the whole upstream.
    public var tag: String?
}

/// Per-request settings: what a route may change.
public struct RouteSettings: Sendable, Equatable {
    public var timeouts: Timeouts
    public var retries: RetryPolicy
    public var rateLimit: RateLimitPolicy?
}

public struct Timeouts: Sendable, Equatable {
    public var connect: TimeAmount = .seconds(1)
    /// Each attempt, until its response is complete; nil leaves only the request timeout.
    public var perTry: TimeAmount? = nil
    /// The whole request, retries and backoff included, until the response head; nil is none.
    public var request: TimeAmount? = .seconds(15)
}

public struct RetryPolicy: Sendable, Equatable {
    public enum Condition: Sendable, Hashable {
        case connectFailure, reset, timeout
        case status(Int)
    }

    /// Retries after the first attempt.
    public var attempts: Int = 2
    public var conditions: Set<Condition> = [.connectFailure, .reset, .status(502), .status(503), .status(504)]
    /// Retry non-idempotent methods too (connect failures are always safe to retry).
    public var allMethods = false
    public var backoffBase: TimeAmount = .milliseconds(25)
    public var backoffMax: TimeAmount = .milliseconds(250)
    public var budget = RetryBudgetPolicy()
    /// Request bodies up to this size are kept so that they can be sent again.
    public var bufferLimit = 64 * 1024
}

/// Retries stay below `percent` of requests over `window`, plus a floor so that quiet clusters retry too.
public struct RetryBudgetPolicy: Sendable, Equatable {
    public var percent: Double = 20
    public var minRetriesPerSecond: Double = 10
    public var window: TimeAmount = .seconds(10)
}

public struct LoadBalancerPolicy: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case roundRobin = "round_robin", random, leastRequest = "least_request", ringHash = "ring_hash"
    }

    public var kind: Kind = .roundRobin
    /// Header hashed by `ring_hash`; requests without it are spread at random.
    public var hashHeader: String? = nil
}

public struct CircuitBreakerPolicy: Sendable, Equatable {
    public var maxConnections = 1024
    public var maxPendingRequests = 1024
    public var maxRequests = 1024
}

public struct OutlierDetectionPolicy: Sendable, Equatable {
    public var enabled = true
    /// Consecutive 5xx answers or connect failures that eject an instance.
    public var consecutiveErrors = 5
    public var baseEjectionTime: TimeAmount = .seconds(30)
    public var maxEjectionTime: TimeAmount = .seconds(300)
    public var maxEjectionPercent = 50
}

public struct RateLimitPolicy: Sendable, Equatable {
    public enum Key: Sendable, Equatable {
        case none, source
        case header(String)
        /// The verified caller (a token's subject or an API key's name), else the source address (gateways only).
        case client
    }

    /// Tokens added per second.
    public var rate: Double
    public var burst: Int
    public var key: Key
    /// Requests allowed per `period`, as written (for the `X-RateLimit-Limit` header).
    public var requests: Int
    public var period: TimeAmount
    /// On a gateway: the limit of all its replicas together, each enforcing an equal share.
    public var global = false

    /// This limit's share when `replicas` enforce it together.
    public func share(of replicas: Int) -> RateLimitPolicy {
        guard global, replicas > 1 else { return self }
        var share = self
        share.rate = rate / Double(replicas)
        share.burst = max(1, burst / replicas)
        share.requests = max(1, requests / replicas)
        return share
    }
}
