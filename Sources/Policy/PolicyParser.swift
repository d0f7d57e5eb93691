import Foundation
import NIOCore
import TrellisCore

/// Reads policy YAML into a `SidecarPolicy`, all or nothing.
///
/// Sections merge field by field: `defaults` over the built-in values, each upstream over
/// `defaults`, each route over its listener. Unknown fields are errors, so typos do not pass silently.
public enum PolicyParser {
    /// Reads and parses a policy file; the error names the file or the field.
    public static func read(file path: String) throws(ConfigError) -> (text: String, policy: SidecarPolicy) {
        try readFile(path, parse)
    }

    /// Reads `path` and parses its text with `parse`; the error names the file or the field.
    static func readFile<Parsed>(_ path: String, _ parse: (String) throws(ConfigError) -> Parsed) throws(ConfigError)
        -> (text: String, policy: Parsed) {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ConfigError("cannot read \(path): \(error.localizedDescription)")
        }
        do { return (text, try parse(text)) } catch { throw error.inFile(path) }
    }

    public static func parse(_ yaml: String) throws(ConfigError) -> SidecarPolicy {
        let top = try ConfigReader(yaml: yaml, allowed: ["service", "inbound", "defaults", "upstreams"])
        var policy = SidecarPolicy()
        if let node = top["service"] { policy.service = try node.string() }
        if let node = top["inbound"] {
            policy.inbound = try listener(node, base: .inboundDefault, allowsSplit: false)
        }
        if let node = top["defaults"] {
            policy.defaults = try listener(node, base: .outboundDefault, allowsSplit: false)
            guard policy.defaults.routes.isEmpty else {
                throw ConfigError(path: "defaults.routes", "routes belong to one upstream (upstreams.<name>.routes)")
            }
        }
        if let node = top["upstreams"] {
            for (name, value) in try node.mapping().entries {
                policy.upstreams[name] = try listener(value, base: policy.defaults, allowsSplit: true)
            }
        }
        return policy
    }

    static func listener(_ node: ConfigValue, base: ListenerPolicy, allowsSplit: Bool) throws(ConfigError) -> ListenerPolicy {
        let path = node.path
        let f = try node.mapping(allowed: routeSettingFields.union(["load_balancer", "circuit_breaker", "outlier_detection", "routes"]))
        var out = base
        if let n = f["load_balancer"] { out.loadBalancer = try loadBalancer(n, base: base.loadBalancer) }
        if let n = f["circuit_breaker"] {
            let b = try n.mapping(allowed: ["max_connections", "max_pending_requests", "max_requests"])
            out.circuitBreaker.maxConnections = try b.int("max_connections", 1...1_000_000) ?? base.circuitBreaker.maxConnections
            out.circuitBreaker.maxPendingRequests = try b.int("max_pending_requests", 0...1_000_000) ?? base.circuitBreaker.maxPendingRequests
            out.circuitBreaker.maxRequests = try b.int("max_requests", 1...1_000_000) ?? base.circuitBreaker.maxRequests
        }
        if let n = f["outlier_detection"] {
            let o = try n.mapping(allowed: ["enabled", "consecutive_errors", "base_ejection_time", "max_ejection_time", "max_ejection_percent"])
            out.outlierDetection.enabled = try o.bool("enabled") ?? base.outlierDetection.enabled
            out.outlierDetection.consecutiveErrors = try o.int("consecutive_errors", 1...1000) ?? base.outlierDetection.consecutiveErrors
            out.outlierDetection.baseEjectionTime = try o.timeAmount("base_ejection_time") ?? base.outlierDetection.baseEjectionTime
            out.outlierDetection.maxEjectionTime = try o.timeAmount("max_ejection_time") ?? base.outlierDetection.maxEjectionTime
            out.outlierDetection.maxEjectionPercent = try o.int("max_ejection_percent", 0...100) ?? base.outlierDetection.maxEjectionPercent
        }
        out.route = try routeSettings(f, path: path, base: base.route)
        if let n = f["routes"] {
            out.routes = []
            for item in try n.items() { out.routes.append(try route(item, base: out.route, allowsSplit: allowsSplit)) }
            let names = out.routes.map(\.name)
            if let duplicate = names.first(where: { name in names.filter { $0 == name }.count > 1 }) {
                throw ConfigError(path: "\(path).routes", "route name \"\(duplicate)\" is used twice")
            }
        }
        return out
    }

    private static let routeSettingFields: Set<String> = ["timeouts", "retries", "rate_limit"]

    private static func route(_ node: ConfigValue, base: RouteSettings, allowsSplit: Bool) throws(ConfigError) -> Route {
        let path = node.path
        let f = try node.mapping(allowed: routeSettingFields.union(["name", "match", "split"]))
        guard let nameNode = f["name"] else { throw ConfigError(path: "\(path).name", "is required") }
        let name = try nameNode.string()
        guard !name.isEmpty, name != "default" else {
            throw ConfigError(path: "\(path).name", "must be non-empty and not \"default\"")
        }
        var match = RouteMatch()
        if let m = f["match"] {
            let mf = try m.mapping(allowed: ["path_prefix", "methods", "headers"])
            if let p = mf["path_prefix"] {
                match.pathPrefix = try p.string()
                guard match.pathPrefix.hasPrefix("/") else {
                    throw ConfigError(path: "\(path).match.path_prefix", "must start with /")
                }
            }
            if let methods = mf["methods"] { match.methods = try methods.strings().map { $0.uppercased() } }
            if let headers = mf["headers"] {
                for (header, value) in try headers.mapping().entries {
                    match.headers.append(.init(name: header.lowercased(), value: try value.string()))
                }
            }
        }
        var split: [SplitTarget] = []
        if let s = f["split"] {
            guard allowsSplit else { throw ConfigError(path: "\(path).split", "only upstream routes can split traffic") }
            let items = try s.items()
            guard !items.isEmpty else { throw ConfigError(path: "\(path).split", "must be a non-empty list of {weight, tag}") }
            for (index, item) in items.enumerated() {
                let t = try item.mapping(allowed: ["weight", "tag"])
                guard let weight = try t.int("weight", 0...10_000) else {
                    throw ConfigError(path: "\(path).split[\(index)].weight", "is required")
                }
                var tag: String?
                if let node = t["tag"] { tag = try node.string() }
                split.append(SplitTarget(weight: weight, tag: tag))
            }
            guard split.contains(where: { $0.weight > 0 }) else {
                throw ConfigError(path: "\(path).split", "at least one weight must be above 0")
            }
        }
        return Route(name: name, match: match, settings: try routeSettings(f, path: path, base: base), split: split)
    }

    private static func routeSettings(_ f: ConfigReader, path: String, base: RouteSettings) throws(ConfigError) -> RouteSettings {
        var out = base
        if let n = f["timeouts"] {
            let t = try n.mapping(allowed: ["connect", "per_try", "request"])
            out.timeouts.connect = try t.timeAmount("connect") ?? base.timeouts.connect
            if t["per_try"] != nil { out.timeouts.perTry = try t.optionalTimeAmount("per_try") }
            if t["request"] != nil { out.timeouts.request = try t.optionalTimeAmount("request") }
        }
        if let n = f["retries"] { out.retries = try retries(n, base: base.retries) }
        if let n = f["rate_limit"] { out.rateLimit = try rateLimit(n) }
        return out
    }

    private static func retries(_ node: ConfigValue, base: RetryPolicy) throws(ConfigError) -> RetryPolicy {
        let path = node.path
        let r = try node.mapping(allowed: ["attempts", "retry_on", "methods", "backoff", "budget", "buffer_limit"])
        var out = base
        out.attempts = try r.int("attempts", 0...10) ?? base.attempts
        if let on = r["retry_on"] {
            out.conditions = []
            for (index, item) in try on.strings().enumerated() {
                out.conditions.formUnion(try retryConditions(item, field: "\(path).retry_on[\(index)]"))
            }
        }
        if let m = r["methods"] {
            switch try m.string() {
            case "idempotent": out.allMethods = false
            case "all": out.allMethods = true
            default: throw ConfigError(path: "\(path).methods", "must be idempotent or all")
            }
        }
        if let b = r["backoff"] {
            let bf = try b.mapping(allowed: ["base", "max"])
            out.backoffBase = try bf.timeAmount("base") ?? base.backoffBase
            out.backoffMax = try bf.timeAmount("max") ?? base.backoffMax
            guard out.backoffMax >= out.backoffBase else {
                throw ConfigError(path: "\(path).backoff.max", "must not be below backoff.base")
            }
        }
        if let b = r["budget"] {
            let bf = try b.mapping(allowed: ["percent", "min_retries_per_second", "window"])
            out.budget.percent = try bf.double("percent", 0...1000) ?? base.budget.percent
            out.budget.minRetriesPerSecond = try bf.double("min_retries_per_second", 0...1_000_000) ?? base.budget.minRetriesPerSecond
            out.budget.window = try bf.timeAmount("window") ?? base.budget.window
            guard out.budget.window >= .seconds(1) else { throw ConfigError(path: "\(path).budget.window", "must be at least 1s") }
        }
        if r["buffer_limit"] != nil { out.bufferLimit = try r.size("buffer_limit") }
        return out
    }

    static func retryConditions(_ text: String, field: String) throws(ConfigError) -> Set<RetryPolicy.Condition> {
        switch text {
        case "connect_failure": return [.connectFailure]
        case "reset": return [.reset]
        case "timeout": return [.timeout]
        case "gateway_error": return [.status(502), .status(503), .status(504)]
        case "5xx": return Set((500...599).map { .status($0) })
        default:
            guard let code = Int(text), (400...599).contains(code) else {
                throw ConfigError(path: field, "\"\(text)\" is not connect_failure, reset, timeout, gateway_error, 5xx or a status 400-599")
            }
            return [.status(code)]
        }
    }

    /// `key`: none, source or header:<name>; on a gateway also client (the verified caller), and
    /// `global` (the limit of all the gateway's replicas together).
    static func rateLimit(_ node: ConfigValue, allowsClient: Bool = false) throws(ConfigError) -> RateLimitPolicy {
        let path = node.path
        let r = try node.mapping(allowed: allowsClient ? ["requests", "per", "burst", "key", "global"] : ["requests", "per", "burst", "key"])
        guard let requests = try r.int("requests", 1...100_000_000) else { throw ConfigError(path: "\(path).requests", "is required") }
        let period = try r.timeAmount("per") ?? .seconds(1)
        guard period > .zero else { throw ConfigError(path: "\(path).per", "must be above 0") }
        let burst = try r.int("burst", 1...100_000_000) ?? requests
        var key = RateLimitPolicy.Key.none
        if let k = r["key"] {
            let text = try k.string()
            if text == "source" {
                key = .source
            } else if text == "client" && allowsClient {
                key = .client
            } else if text.hasPrefix("header:"), text.count > 7 {
                key = .header(String(text.dropFirst(7)).lowercased())
            } else if text != "none" {
                throw ConfigError(path: "\(path).key", "must be none, source\(allowsClient ? ", client" : "") or header:<name>")
            }
        }
        let rate = Double(requests) / (Double(period.nanoseconds) / 1e9)
        return RateLimitPolicy(rate: rate, burst: burst, key: key, requests: requests, period: period, global: try r.bool("global") ?? false)
    }

    private static func loadBalancer(_ node: ConfigValue, base: LoadBalancerPolicy) throws(ConfigError) -> LoadBalancerPolicy {
        let path = node.path
        var out = base
        if case .scalar = node.node {
            out.kind = try kind(node)
            return out
        }
        let f = try node.mapping(allowed: ["policy", "hash_header"])
        if let p = f["policy"] { out.kind = try kind(p) }
        if let h = f["hash_header"] { out.hashHeader = try h.string().lowercased() }
        if out.kind == .ringHash && out.hashHeader == nil {
            throw ConfigError(path: "\(path).hash_header", "ring_hash needs the header to hash")
        }
        return out
    }

    private static func kind(_ value: ConfigValue) throws(ConfigError) -> LoadBalancerPolicy.Kind {
        let text = try value.string()
        guard let kind = LoadBalancerPolicy.Kind(rawValue: text) else {
            throw value.error("\"\(text)\" is not one of \(LoadBalancerPolicy.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return kind
    }
}

/// Policy values: durations as NIO's `TimeAmount`, sizes such as `64KiB`.
extension ConfigReader {
    func timeAmount(_ key: String) throws(ConfigError) -> TimeAmount? {
        try duration(key, allowsZero: true).map { .nanoseconds($0.nanoseconds) }
    }

    /// A duration where `0` or `none` switches the timeout off.
    func optionalTimeAmount(_ key: String) throws(ConfigError) -> TimeAmount? {
        if ["0", "none"].contains(try string(key)) { return nil }
        return try timeAmount(key)
    }

    /// A size like `64KiB`, `1MiB` or a byte count, up to 64 MiB.
    func size(_ key: String) throws(ConfigError) -> Int {
        let text = try requiredString(key)
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("KB", 1000), ("MB", 1_000_000), ("B", 1)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            if let n = Int(String(text.dropLast(suffix.count)).filter { $0 != " " }), (0...(64 << 20) / factor).contains(n) {
                return n * factor
            }
        }
        if let n = Int(text), (0...(64 << 20)).contains(n) { return n }
        throw error(key, "\"\(text)\" is not a size up to 64MiB like 64KiB")
    }
}
