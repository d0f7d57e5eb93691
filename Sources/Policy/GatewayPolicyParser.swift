import Foundation
import NIOCore
import TrellisCore

/// Reads gateway YAML into a `GatewayPolicy`, all or nothing. Rules read as Gateway API's
/// HTTPRoute rules do (`matches`, `filters`, `backendRefs`, `timeouts`, `retry`), with the edge's
/// own `auth`, `rate_limit`, `cors` and `max_request_body`. Unknown fields are errors.
public enum GatewayPolicyParser {
    /// Reads and parses a policy file; the error names the file or the field.
    public static func read(file path: String) throws(ConfigError) -> (text: String, policy: GatewayPolicy) {
        try PolicyParser.readFile(path, parse)
    }

    public static func parse(_ yaml: String) throws(ConfigError) -> GatewayPolicy {
        let top = try ConfigReader(yaml: yaml, allowed: ["gateway", "identity_headers", "jwt", "api_keys", "backends", "rules"])
        var policy = GatewayPolicy()
        if let node = top["gateway"] { policy.gateway = try node.string() }
        if let h = try top.map("identity_headers", allowed: ["user", "roles", "roles_claim"]) {
            policy.identityHeaders.user = try h.string("user")?.lowercased() ?? policy.identityHeaders.user
            policy.identityHeaders.roles = try h.string("roles")?.lowercased() ?? policy.identityHeaders.roles
            policy.identityHeaders.rolesClaim = try h.string("roles_claim") ?? policy.identityHeaders.rolesClaim
        }
        if let node = top["jwt"] {
            for (name, value) in try node.mapping().entries { policy.jwtProviders[name] = try jwtProvider(value) }
        }
        if let node = top["api_keys"] {
            for (name, value) in try node.mapping().entries { policy.apiKeys[name] = try apiKeySet(value) }
        }
        if let node = top["backends"] {
            policy.backends = try PolicyParser.listener(node, base: .outboundDefault, allowsSplit: false)
            guard policy.backends.routes.isEmpty else { throw ConfigError(path: "backends.routes", "routes are the gateway's rules") }
        }
        if let node = top["rules"] {
            for item in try node.items() { policy.rules.append(try rule(item, policy: policy)) }
        }
        let names = policy.rules.map(\.name)
        if let duplicate = names.first(where: { name in names.filter { $0 == name }.count > 1 }) {
            throw ConfigError(path: "rules", "rule name \"\(duplicate)\" is used twice")
        }
        return policy
    }

    private static func rule(_ node: ConfigValue, policy: GatewayPolicy) throws(ConfigError) -> GatewayRule {
        let path = node.path
        let f = try node.mapping(allowed: ["name", "matches", "filters", "backendRefs", "timeouts", "retry", "auth", "rate_limit",
                                           "cors", "max_request_body"])
        let name = try f.requiredString("name")
        var rule = GatewayRule(name: name, matches: [], replacePrefix: nil, replaceFullPath: nil, backends: [], settings: policy.backends.route)
        if let matches = f["matches"] {
            for item in try matches.items() { rule.matches.append(try match(item)) }
        }
        for filter in try f.list("filters", allowed: ["type", "urlRewrite"]) {
            guard try filter.requiredString("type") == "URLRewrite" else {
                throw filter.error("type", "only URLRewrite filters are supported")
            }
            guard let rewrite = try filter.map("urlRewrite", allowed: ["path"]),
                  let rewritePath = try rewrite.map("path", allowed: ["type", "replacePrefixMatch", "replaceFullPath"]) else {
                throw filter.error("urlRewrite", "needs path: {type: ReplacePrefixMatch, replacePrefixMatch: /prefix} or {type: ReplaceFullPath, replaceFullPath: /path}")
            }
            switch try rewritePath.requiredString("type") {
            case "ReplacePrefixMatch":
                let prefix = try rewritePath.requiredString("replacePrefixMatch")
                guard prefix.hasPrefix("/") else { throw rewritePath.error("replacePrefixMatch", "must start with /") }
                // As in Gateway API: the prefix replaced is the one matched.
                guard rule.matches.allSatisfy({ if case .prefix = $0.path { true } else { false } }), !rule.matches.isEmpty else {
                    throw filter.error("type", "ReplacePrefixMatch needs PathPrefix matches")
                }
                rule.replacePrefix = prefix
            case "ReplaceFullPath":
                let path = try rewritePath.requiredString("replaceFullPath")
                guard path.hasPrefix("/") else { throw rewritePath.error("replaceFullPath", "must start with /") }
                rule.replaceFullPath = path
            case let other:
                throw rewritePath.error("type", "\"\(other)\" is not ReplacePrefixMatch or ReplaceFullPath")
            }
        }
        let refs = try f.list("backendRefs", allowed: ["name", "weight", "port", "kind"])
        guard !refs.isEmpty else { throw ConfigError(path: "\(path).backendRefs", "needs at least one backend service") }
        for ref in refs {
            if let kind = try ref.string("kind"), kind != "Service" { throw ref.error("kind", "only Service backends exist here") }
            rule.backends.append(BackendRef(service: try ref.requiredString("name"), weight: try ref.int("weight", 0...1_000_000) ?? 1))
        }
        guard rule.backends.contains(where: { $0.weight > 0 }) else {
            throw ConfigError(path: "\(path).backendRefs", "at least one weight must be above 0")
        }
        if let t = try f.map("timeouts", allowed: ["request", "backendRequest"]) {
            if t["request"] != nil { rule.settings.timeouts.request = try t.optionalTimeAmount("request") }
            if t["backendRequest"] != nil { rule.settings.timeouts.perTry = try t.optionalTimeAmount("backendRequest") }
        }
        if let r = try f.map("retry", allowed: ["codes", "attempts", "backoff"]) {
            rule.settings.retries.attempts = try r.int("attempts", 0...10) ?? rule.settings.retries.attempts
            if r["codes"] != nil {
                rule.settings.retries.conditions = [.connectFailure, .reset]
                for (index, code) in try r.strings("codes").enumerated() {
                    guard let status = Int(code), (400...599).contains(status) else {
                        throw ConfigError(path: "\(path).retry.codes[\(index)]", "\"\(code)\" is not a status from 400 to 599")
                    }
                    rule.settings.retries.conditions.insert(.status(status))
                }
            }
            if let backoff = try r.timeAmount("backoff") {
                rule.settings.retries.backoffBase = backoff
                rule.settings.retries.backoffMax = max(backoff, rule.settings.retries.backoffMax)
            }
        }
        if let n = f["rate_limit"] { rule.settings.rateLimit = try PolicyParser.rateLimit(n, allowsClient: true) }
        if let a = try f.map("auth", allowed: ["jwt", "roles", "scopes", "api_key"]) {
            rule.auth = try auth(a, policy: policy)
        }
        if let c = try f.map("cors", allowed: ["allow_origins", "allow_methods", "allow_headers", "expose_headers", "allow_credentials", "max_age"]) {
            let origins = try c.strings("allow_origins")
            guard !origins.isEmpty else { throw c.error("allow_origins", "needs at least one origin (or \"*\")") }
            var cors = CORSPolicy(allowOrigins: origins)
            if c["allow_methods"] != nil { cors.allowMethods = try c.strings("allow_methods").map { $0.uppercased() } }
            cors.allowHeaders = try c.strings("allow_headers").map { $0.lowercased() }
            cors.exposeHeaders = try c.strings("expose_headers").map { $0.lowercased() }
            cors.allowCredentials = try c.bool("allow_credentials") ?? false
            cors.maxAge = try c.int("max_age", 0...86_400) ?? cors.maxAge
            rule.cors = cors
        }
        if f["max_request_body"] != nil { rule.maxRequestBody = try f.size("max_request_body") }
        return rule
    }

    private static func match(_ node: ConfigValue) throws(ConfigError) -> GatewayMatch {
        let m = try node.mapping(allowed: ["path", "method", "headers", "queryParams"])
        var out = GatewayMatch()
        if let p = try m.map("path", allowed: ["type", "value"]) {
            let value = try p.string("value") ?? "/"
            switch try p.string("type") ?? "PathPrefix" {
            case "PathPrefix":
                guard value.hasPrefix("/") else { throw p.error("value", "must start with /") }
                out.path = .prefix(value)
            case "Exact":
                guard value.hasPrefix("/") else { throw p.error("value", "must start with /") }
                out.path = .exact(value)
            case "RegularExpression":
                try checkRegularExpression(value, p, "value")
                out.path = .regularExpression(value)
            case let other:
                throw p.error("type", "\"\(other)\" is not Exact, PathPrefix or RegularExpression")
            }
        }
        if let method = try m.string("method") { out.method = method.uppercased() }
        out.headers = try values(m, "headers").map { var v = $0; v.name = v.name.lowercased(); return v }
        out.queryParams = try values(m, "queryParams")
        return out
    }

    private static func values(_ m: ConfigReader, _ key: String) throws(ConfigError) -> [GatewayMatch.Value] {
        var out: [GatewayMatch.Value] = []
        for item in try m.list(key, allowed: ["name", "value", "type"]) {
            let value = try item.requiredString("value")
            let type = try item.string("type") ?? "Exact"
            guard type == "Exact" || type == "RegularExpression" else { throw item.error("type", "\"\(type)\" is not Exact or RegularExpression") }
            if type == "RegularExpression" { try checkRegularExpression(value, item, "value") }
            out.append(.init(name: try item.requiredString("name"), value: value, isRegularExpression: type == "RegularExpression"))
        }
        return out
    }

    private static func checkRegularExpression(_ pattern: String, _ reader: ConfigReader, _ key: String) throws(ConfigError) {
        do { _ = try Regex(pattern) } catch { throw reader.error(key, "\"\(pattern)\" is not a regular expression") }
    }

    private static func auth(_ a: ConfigReader, policy: GatewayPolicy) throws(ConfigError) -> RouteAuth {
        if let set = try a.string("api_key") {
            guard a["jwt"] == nil, a["roles"] == nil, a["scopes"] == nil else { throw a.error("api_key", "a route takes a JWT or an API key, not both") }
            guard policy.apiKeys[set] != nil else { throw a.error("api_key", "names no set under api_keys") }
            return .apiKey(set: set)
        }
        let provider = try a.requiredString("jwt")
        guard policy.jwtProviders[provider] != nil else { throw a.error("jwt", "names no provider under jwt") }
        return .jwt(provider: provider, roles: try a.strings("roles"), scopes: try a.strings("scopes"))
    }

    private static let hmacAlgorithms: Set<String> = ["HS256", "HS384", "HS512"]
    private static let publicKeyAlgorithms: Set<String> = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]

    private static func jwtProvider(_ node: ConfigValue) throws(ConfigError) -> JWTProvider {
        let p = try node.mapping(allowed: ["issuer", "audiences", "keys", "jwks_url", "jwks_refresh", "clock_skew"])
        var out = JWTProvider()
        out.issuer = try p.string("issuer")
        out.audiences = try p.strings("audiences")
        for key in try p.list("keys", allowed: ["alg", "secret", "secret_file", "public_key", "public_key_file"]) {
            let algorithm = try key.requiredString("alg")
            if hmacAlgorithms.contains(algorithm) {
                let secret = try keyMaterial(key, inline: "secret", file: "secret_file")
                // Shorter HMAC keys are guessable (RFC 7518 §3.2 asks for at least the hash size).
                guard secret.utf8.count >= 32 else { throw key.error("secret", "must be at least 32 bytes") }
                out.keys.append(.hmac(algorithm: algorithm, secret: Array(secret.utf8)))
            } else if publicKeyAlgorithms.contains(algorithm) {
                let pem = try keyMaterial(key, inline: "public_key", file: "public_key_file")
                guard pem.contains("-----BEGIN PUBLIC KEY-----") else { throw key.error("public_key", "must be a PEM public key (BEGIN PUBLIC KEY)") }
                out.keys.append(.publicKey(algorithm: algorithm, pem: pem))
            } else {
                throw key.error("alg", "\"\(algorithm)\" is not one of HS256/384/512, RS256/384/512, ES256/384/512")
            }
        }
        if let url = try p.string("jwks_url") {
            guard url.hasPrefix("http://") else {
                throw p.error("jwks_url", "must be an http:// URL (the gateway fetches JWKS over plain HTTP: serve it on a trusted network, or give the keys inline)")
            }
            out.jwksURL = url
        }
        out.jwksRefresh = try p.timeAmount("jwks_refresh") ?? out.jwksRefresh
        guard out.jwksRefresh >= .seconds(1) else { throw p.error("jwks_refresh", "must be at least 1s") }
        out.clockSkew = try p.timeAmount("clock_skew") ?? out.clockSkew
        guard !out.keys.isEmpty || out.jwksURL != nil else { throw node.error("needs keys or a jwks_url") }
        return out
    }

    private static func keyMaterial(_ key: ConfigReader, inline: String, file: String) throws(ConfigError) -> String {
        if let value = try key.string(inline) { return value }
        guard let path = try key.string(file) else { throw key.error(inline, "is required (or \(file))") }
        do { return try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .newlines) } catch {
            throw key.error(file, "cannot read \(path): \(error.localizedDescription)")
        }
    }

    private static func apiKeySet(_ node: ConfigValue) throws(ConfigError) -> APIKeySet {
        let s = try node.mapping(allowed: ["header", "query", "keys", "keys_file"])
        var keys: [String: String] = [:]
        for (name, secret) in try s.stringMap("keys") { keys[name] = secret }
        if let file = try s.string("keys_file") {
            // One `name: secret` per line.
            for (name, secret) in try ConfigReader(file: file).entries { keys[name] = try secret.string() }
        }
        guard !keys.isEmpty else { throw node.error("needs keys (name: secret) or a keys_file") }
        guard keys.values.allSatisfy({ $0.utf8.count >= 16 }) else { throw s.error("keys", "every key must be at least 16 bytes") }
        let header = try s.string("header")?.lowercased(), query = try s.string("query")
        guard header != nil || query != nil else { throw node.error("needs the header or query parameter that carries the key") }
        return APIKeySet(header: header, query: query, keys: keys)
    }
}
