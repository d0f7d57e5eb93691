import NIOCore
import TrellisCore

/// Everything a gateway applies at the public edge: routes shaped like Kubernetes Gateway API's
/// HTTPRoute rules, the token issuers and API keys they check, and how backends are called.
///
/// Stored as YAML in the registry KV under `trellis/gateways/<name>`; see `policies/README.md`.
public struct GatewayPolicy: Sendable, Equatable {
    public var gateway: String?
    /// Headers that carry the verified caller to the services; a client never sets them itself.
    public var identityHeaders = IdentityHeaders()
    public var jwtProviders: [String: JWTProvider] = [:]
    public var apiKeys: [String: APIKeySet] = [:]
    /// How every backend service is balanced and protected, and the route settings rules start from.
    public var backends = ListenerPolicy.outboundDefault
    /// Tried in order; the first rule with a matching `matches` entry wins. No match: 404.
    public var rules: [GatewayRule] = []

    public init() {}

    /// The backend services the rules name, each once, in order.
    public var backendServices: [String] {
        var seen = Set<String>()
        return rules.flatMap(\.backends).map(\.service).filter { seen.insert($0).inserted }
    }

    /// The registry KV key holding the policy of gateway `name`.
    public static func key(for name: String) -> String { "trellis/gateways/\(name)" }

    /// The registry API path of that key (`/v1/kv/trellis/gateways/<name>`).
    public static func kvPath(for name: String) -> String {
        "/v1/kv/" + URLPath.escape(key(for: name), keepingSlashes: true)
    }
}

public struct IdentityHeaders: Sendable, Equatable {
    /// Gets the token's subject (`sub`), or the API key's name.
    public var user = "x-user-id"
    /// Gets the roles of `rolesClaim`, comma-separated.
    public var roles = "x-user-roles"
    /// The claim with the caller's roles (a list of strings, or one space-separated string).
    public var rolesClaim = "roles"

    public init() {}
}

/// One HTTPRoute rule.
public struct GatewayRule: Sendable, Equatable {
    public var name: String
    /// Any one of them selects the rule; none means every request.
    public var matches: [GatewayMatch]
    /// `URLRewrite` with `ReplacePrefixMatch`: the matched path prefix is replaced by this.
    public var replacePrefix: String?
    /// `URLRewrite` with `ReplaceFullPath`: the whole path is replaced (the query stays).
    public var replaceFullPath: String?
    public var backends: [BackendRef]
    public var settings: RouteSettings
    public var auth: RouteAuth = .none
    public var cors: CORSPolicy?
    /// Larger request bodies are refused with 413 (from `Content-Length`, or as a chunked body streams).
    public var maxRequestBody: Int?
}

public struct GatewayMatch: Sendable, Equatable {
    public enum Path: Sendable, Equatable {
        case exact(String), prefix(String), regularExpression(String)
    }

    public struct Value: Sendable, Equatable {
        /// Lowercase for headers; as written for query parameters.
        public var name: String
        public var value: String
        public var isRegularExpression: Bool
    }

    public var path: Path = .prefix("/")
    public var method: String?
    public var headers: [Value] = []
    public var queryParams: [Value] = []
}

public struct BackendRef: Sendable, Equatable {
    /// The service in the registry.
    public var service: String
    public var weight: Int
}

public enum RouteAuth: Sendable, Equatable {
    case none
    /// A bearer JWT from `provider`, holding every role in `roles` and every scope in `scopes`.
    case jwt(provider: String, roles: [String], scopes: [String])
    /// A key of the set, in its header or query parameter.
    case apiKey(set: String)
}

/// Who issues the tokens a route accepts, and the keys that verify them.
public struct JWTProvider: Sendable, Equatable {
    public enum Key: Sendable, Equatable {
        /// HS256/384/512 with a shared secret.
        case hmac(algorithm: String, secret: [UInt8])
        /// RS256/384/512 or ES256/384/512 with a PEM public key.
        case publicKey(algorithm: String, pem: String)
    }

    /// Required `iss`, when set.
    public var issuer: String?
    /// `aud` must name one of them, when set.
    public var audiences: [String] = []
    /// Keys given inline or read from files when the policy was read.
    public var keys: [Key] = []
    /// A JWKS document fetched in the background; the last good set stays in use when a fetch fails.
    public var jwksURL: String?
    public var jwksRefresh: TimeAmount = .minutes(5)
    /// Allowed clock difference for `exp` and `nbf`.
    public var clockSkew: TimeAmount = .seconds(30)
}

/// API keys of partners or webhooks: sent in `header` (or `query`), named for logs and limits.
public struct APIKeySet: Sendable, Equatable {
    public var header: String?
    public var query: String?
    /// Key name → secret.
    public var keys: [String: String]
}

/// Cross-origin requests a route allows; preflights are answered at the gateway.
public struct CORSPolicy: Sendable, Equatable {
    /// Exact origins, or `*`.
    public var allowOrigins: [String]
    public var allowMethods: [String] = ["GET", "HEAD", "POST"]
    public var allowHeaders: [String] = []
    public var exposeHeaders: [String] = []
    public var allowCredentials = false
    public var maxAge: Int = 600

    /// The `Access-Control-Allow-Origin` value for `origin`, nil when it is not allowed.
    public func allowedOrigin(_ origin: String) -> String? {
        if allowOrigins.contains(origin) { return origin }
        if allowOrigins.contains("*") { return allowCredentials ? origin : "*" }
        return nil
    }
}
