import Foundation
import NIOHTTP1
import Policy
import TrellisCore

/// Decides who calls a gateway route: a bearer JWT of the route's provider with the roles and
/// scopes it requires, or one of its API keys. Refusals follow RFC 6750: 401 with a
/// `WWW-Authenticate` challenge for a missing or invalid credential, 403 `insufficient_scope` for a
/// valid one without the grants; the body is a JSON error. Confined to the data-plane loop.
final class EdgeAuthenticator {
    private(set) var verifiers: [String: JWTVerifier] = [:]
    private var apiKeys: [String: APIKeySet] = [:]
    private(set) var identityHeaders = IdentityHeaders()

    /// Takes a new policy with the keys of each provider (inline, from files, last JWKS).
    func apply(_ policy: GatewayPolicy, keys: [String: [VerificationKey]]) {
        identityHeaders = policy.identityHeaders
        apiKeys = policy.apiKeys
        var next: [String: JWTVerifier] = [:]
        for (name, provider) in policy.jwtProviders {
            next[name] = JWTVerifier(provider: provider, keys: keys[name] ?? [], rolesClaim: policy.identityHeaders.rolesClaim)
        }
        verifiers = next
    }

    /// The verified caller (nil on a public route), or the answer that refuses the request.
    func authenticate(_ auth: RouteAuth, _ head: MessageHead, now: Double) -> Result<EdgeIdentity?, LocalAnswer> {
        switch auth {
        case .none:
            return .success(nil)
        case .jwt(let name, let roles, let scopes):
            guard let verifier = verifiers[name] else { return .failure(Self.refusal(.unauthorized, "invalid_token", "no such token issuer")) }
            guard let token = Self.bearerToken(head) else {
                return .failure(Self.refusal(.unauthorized, nil, "a bearer token is required"))
            }
            switch verifier.verify(token, now: now) {
            case .failure(let failure):
                return .failure(Self.refusal(.unauthorized, "invalid_token", failure.description))
            case .success(let identity):
                if let missing = roles.first(where: { !identity.roles.contains($0) }) {
                    return .failure(Self.refusal(.forbidden, "insufficient_scope", "the role \(missing) is required"))
                }
                if let missing = scopes.first(where: { !identity.scopes.contains($0) }) {
                    return .failure(Self.refusal(.forbidden, "insufficient_scope", "the scope \(missing) is required", scope: scopes))
                }
                return .success(identity)
            }
        case .apiKey(let name):
            guard let set = apiKeys[name] else { return .failure(Self.apiKeyRefusal("no such API key set")) }
            let presented = set.header.flatMap { head.first(name: $0) } ?? set.query.flatMap { Self.queryValue(head.target, $0) }
            guard let presented, !presented.isEmpty else { return .failure(Self.apiKeyRefusal("an API key is required")) }
            // Every key is compared, in constant time, so the answer's timing tells nothing.
            var found: String?
            for (keyName, secret) in set.keys where ConstantTime.equal(presented, secret) { found = keyName }
            guard let found else { return .failure(Self.apiKeyRefusal("the API key is not valid")) }
            return .success(EdgeIdentity(id: found))
        }
    }

    /// The token of `Authorization: Bearer <token>` (RFC 6750 §2.1).
    private static func bearerToken(_ head: MessageHead) -> Substring? {
        guard let value = head.first(name: "authorization"), value.count > 7,
              value.prefix(7).lowercased() == "bearer " else { return nil }
        let token = value.dropFirst(7).drop { $0 == " " }
        return token.isEmpty ? nil : Substring(token)
    }

    private static func queryValue(_ target: String, _ name: String) -> String? {
        guard let mark = target.firstIndex(of: "?") else { return nil }
        for pair in target[target.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0] == name { return String(parts[1]).removingPercentEncoding }
        }
        return nil
    }

    /// RFC 6750 §3: the challenge, with `error` when a credential was presented.
    private static func refusal(_ status: HTTPResponseStatus, _ error: String?, _ description: String, scope: [String] = []) -> LocalAnswer {
        var challenge = #"Bearer realm="trellis""#
        if let error { challenge += #", error="\#(error)", error_description="\#(description)""# }
        if !scope.isEmpty { challenge += #", scope="\#(scope.joined(separator: " "))""# }
        return LocalAnswer(status: status, reason: error ?? "unauthorized", message: description,
                           json: Self.errorBody(error ?? "unauthorized", description), headerLines: [("www-authenticate", challenge)])
    }

    private static func apiKeyRefusal(_ description: String) -> LocalAnswer {
        LocalAnswer(status: .unauthorized, reason: "invalid_api_key", message: description,
                    json: errorBody("invalid_api_key", description), headerLines: [("www-authenticate", #"ApiKey realm="trellis""#)])
    }

    static func errorBody(_ error: String, _ description: String) -> String {
        JSON.object(JSONObject([("error", .string(error)), ("error_description", .string(description))])).text
    }
}

/// Cross-origin resource sharing at the gateway: preflights answered there, allowed origins
/// named on the responses of actual requests.
enum CORS {
    /// `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
    static func isPreflight(_ head: MessageHead) -> Bool {
        head.isOPTIONS && head.first(name: "origin") != nil && head.first(name: "access-control-request-method") != nil
    }

    /// 204 with what the route allows, or 403 when the origin, method or a header is not allowed.
    static func preflight(_ policy: CORSPolicy, _ head: MessageHead) -> LocalAnswer {
        let origin = head.first(name: "origin") ?? ""
        let method = (head.first(name: "access-control-request-method") ?? "").uppercased()
        let requested = (head.first(name: "access-control-request-headers") ?? "").lowercased()
            .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard let allowed = policy.allowedOrigin(origin), policy.allowMethods.contains(method),
              requested.allSatisfy({ policy.allowHeaders.contains($0) || policy.allowHeaders.contains("*") }) else {
            let description = "cross-origin request from \(origin) with \(method) is not allowed"
            return LocalAnswer(status: .forbidden, reason: "cors_refused", message: description,
                               json: EdgeAuthenticator.errorBody("cors_refused", description), headerLines: [("vary", "Origin")])
        }
        var lines: [(String, String)] = [("access-control-allow-origin", allowed), ("access-control-allow-methods", policy.allowMethods.joined(separator: ", ")),
                     ("access-control-max-age", String(policy.maxAge)), ("vary", "Origin")]
        if !requested.isEmpty { lines.append(("access-control-allow-headers", requested.joined(separator: ", "))) }
        if policy.allowCredentials { lines.append(("access-control-allow-credentials", "true")) }
        return LocalAnswer(status: .noContent, reason: "cors_preflight", message: "", headerLines: lines)
    }

    /// The lines for the response to an actual request from `origin`; none when it is not allowed.
    static func responseLines(_ policy: CORSPolicy, origin: String?) -> [(String, String)] {
        guard let origin, let allowed = policy.allowedOrigin(origin) else { return [] }
        var lines: [(String, String)] = [("access-control-allow-origin", allowed), ("vary", "Origin")]
        if policy.allowCredentials { lines.append(("access-control-allow-credentials", "true")) }
        if !policy.exposeHeaders.isEmpty { lines.append(("access-control-expose-headers", policy.exposeHeaders.joined(separator: ", "))) }
        return lines
    }
}
