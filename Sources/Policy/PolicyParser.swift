import Foundation
import NIOCore
import TrellisCore
import Yams

/// A policy that cannot be applied, with the path of the offending field (`upstreams.catalog.retries.attempts`).
public struct PolicyError: Error, CustomStringConvertible, Equatable {
    public let field: String
    public let problem: String
    public var description: String { field.isEmpty ? problem : "\(field): \(problem)" }
}

/// Reads policy YAML into a `SidecarPolicy`, all or nothing.
///
/// Sections merge field by field: `defaults` over the built-in values, each upstream over
/// `defaults`, each route over its listener. Unknown fields are errors, so typos do not pass silently.
public enum PolicyParser {
    /// Reads and parses a policy file; the error names the file or the field.
    public static func read(file path: String) throws(PolicyError) -> (text: String, policy: SidecarPolicy) {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw PolicyError(field: "", problem: "cannot read \(path): \(error.localizedDescription)")
        }
        do { return (text, try parse(text)) } catch {
            throw PolicyError(field: "", problem: "\(path): invalid policy: \(error)")
        }
    }

    public static func parse(_ yaml: String) throws(PolicyError) -> SidecarPolicy {
        let root: Yams.Node?
        do { root = try Yams.compose(yaml: yaml) } catch { throw PolicyError(field: "", problem: "not valid YAML: \(error)") }
        guard let root else { return SidecarPolicy() }
        let top = try Fields(root, path: "", allowed: ["service", "inbound", "defaults", "upstreams"])
        var policy = SidecarPolicy()
        if let node = top["service"] { policy.service = try string(node, "service") }
        if let node = top["inbound"] {
            policy.inbound = try listener(node, path: "inbound", base: .inboundDefault, allowsSplit: false)
        }
        if let node = top["defaults"] {
            policy.defaults = try listener(node, path: "defaults", base: .outboundDefault, allowsSplit: false)
            guard policy.defaults.routes.isEmpty else {
                throw PolicyError(field: "defaults.routes", problem: "routes belong to one upstream (upstreams.<name>.routes)")
            }
        }
        if let node = top["upstreams"] {
            for (name, value) in try Fields(node, path: "upstreams", allowed: nil).entries {
                policy.upstreams[name] = try listener(value, path: "upstreams.\(name)", base: policy.defaults, allowsSplit: true)
            }
        }
        return policy
    }

    private static func listener(_ node: Yams.Node, path: String, base: ListenerPolicy, allowsSplit: Bool) throws(PolicyError) -> ListenerPolicy {
        let f = try Fields(node, path: path, allowed: ["load_balancer", "circuit_breaker", "outlier_detection", "routes"] + routeSettingFields)
        var out = base
        if let n = f["load_balancer"] { out.loadBalancer = try loadBalancer(n, "\(path).load_balancer", base: base.loadBalancer) }
        if let n = f["circuit_breaker"] {
            let b = try Fields(n, path: "\(path).circuit_breaker", allowed: ["max_connections", "max_pending_requests", "max_requests"])
            out.circuitBreaker.maxConnections = try b.int("max_connections", 1...1_000_000) ?? base.circuitBreaker.maxConnections
            out.circuitBreaker.maxPendingRequests = try b.int("max_pending_requests", 0...1_000_000) ?? base.circuitBreaker.maxPendingRequests
            out.circuitBreaker.maxRequests = try b.int("max_requests", 1...1_000_000) ?? base.circuitBreaker.maxRequests
        }
        if let n = f["outlier_detection"] {
            let o = try Fields(n, path: "\(path).outlier_detection",
                               allowed: ["enabled", "consecutive_errors", "base_ejection_time", "max_ejection_time", "max_ejection_percent"])
            out.outlierDetection.enabled = try o.bool("enabled") ?? base.outlierDetection.enabled
            out.outlierDetection.consecutiveErrors = try o.int("consecutive_errors", 1...1000) ?? base.outlierDetection.consecutiveErrors
            out.outlierDetection.baseEjectionTime = try o.duration("base_ejection_time") ?? base.outlierDetection.baseEjectionTime
            out.outlierDetection.maxEjectionTime = try o.duration("max_ejection_time") ?? base.outlierDetection.maxEjectionTime
            out.outlierDetection.maxEjectionPercent = try o.int("max_ejection_percent", 0...100) ?? base.outlierDetection.maxEjectionPercent
        }
        out.route = try routeSettings(f, path: path, base: base.route)
        if let n = f["routes"] {
            guard case .sequence(let items) = n else { throw PolicyError(field: "\(path).routes", problem: "must be a list of routes") }
            out.routes = []
            for (index, item) in items.enumerated() {
                out.routes.append(try route(item, path: "\(path).routes[\(index)]", base: out.route, allowsSplit: allowsSplit))
            }
            let names = out.routes.map(\.name)
            if let duplicate = names.first(where: { name in names.filter { $0 == name }.count > 1 }) {
                throw PolicyError(field: "\(path).routes", problem: "route name \"\(duplicate)\" is used twice")
            }
        }
        return out
    }

    private static let routeSettingFields = ["timeouts", "retries", "rate_limit"]

    private static func route(_ node: Yams.Node, path: String, base: RouteSettings, allowsSplit: Bool) throws(PolicyError) -> Route {
        let f = try Fields(node, path: path, allowed: ["name", "match", "split"] + routeSettingFields)
        guard let nameNode = f["name"] else { throw PolicyError(field: "\(path).name", problem: "is required") }
        let name = try string(nameNode, "\(path).name")
        guard !name.isEmpty, name != "default" else {
            throw PolicyError(field: "\(path).name", problem: "must be non-empty and not \"default\"")
        }
        var match = RouteMatch()
        if let m = f["match"] {
            let mf = try Fields(m, path: "\(path).match", allowed: ["path_prefix", "methods", "headers"])
            if let p = mf["path_prefix"] {
                match.pathPrefix = try string(p, "\(path).match.path_prefix")
                guard match.pathPrefix.hasPrefix("/") else {
                    throw PolicyError(field: "\(path).match.path_prefix", problem: "must start with /")
                }
            }
            if let methods = mf["methods"] { match.methods = try strings(methods, "\(path).match.methods").map { $0.uppercased() } }
            if let headers = mf["headers"] {
                for (header, value) in try Fields(headers, path: "\(path).match.headers", allowed: nil).entries {
                    match.headers.append(.init(name: header.lowercased(), value: try string(value, "\(path).match.headers.\(header)")))
                }
            }
        }
        var split: [SplitTarget] = []
        if let s = f["split"] {
            guard allowsSplit else { throw PolicyError(field: "\(path).split", problem: "only upstream routes can split traffic") }
            guard case .sequence(let items) = s, !items.isEmpty else {
                throw PolicyError(field: "\(path).split", problem: "must be a non-empty list of {weight, tag}")
            }
            for (index, item) in items.enumerated() {
                let t = try Fields(item, path: "\(path).split[\(index)]", allowed: ["weight", "tag"])
                guard let weight = try t.int("weight", 0...10_000) else {
                    throw PolicyError(field: "\(path).split[\(index)].weight", problem: "is required")
                }
                var tag: String?
                if let node = t["tag"] { tag = try string(node, "\(path).split[\(index)].tag") }
                split.append(SplitTarget(weight: weight, tag: tag))
            }
            guard split.contains(where: { $0.weight > 0 }) else {
                throw PolicyError(field: "\(path).split", problem: "at least one weight must be above 0")
            }
        }
        return Route(name: name, match: match, settings: try routeSettings(f, path: path, base: base), split: split)
    }

    private static func routeSettings(_ f: Fields, path: String, base: RouteSettings) throws(PolicyError) -> RouteSettings {
        var out = base
        if let n = f["timeouts"] {
            let t = try Fields(n, path: "\(path).timeouts", allowed: ["connect", "per_try", "request"])
            out.timeouts.connect = try t.duration("connect") ?? base.timeouts.connect
            if t["per_try"] != nil { out.timeouts.perTry = try t.optionalDuration("per_try") }
            if t["request"] != nil { out.timeouts.request = try t.optionalDuration("request") }
        }
        if let n = f["retries"] { out.retries = try retries(n, path: "\(path).retries", base: base.retries) }
        if let n = f["rate_limit"] { out.rateLimit = try rateLimit(n, path: "\(path).rate_limit") }
        return out
    }

    private static func retries(_ node: Yams.Node, path: String, base: RetryPolicy) throws(PolicyError) -> RetryPolicy {
        let r = try Fields(node, path: path, allowed: ["attempts", "retry_on", "methods", "backoff", "budget", "buffer_limit"])
        var out = base
        out.attempts = try r.int("attempts", 0...10) ?? base.attempts
        if let on = r["retry_on"] {
            out.conditions = []
            for (index, item) in try strings(on, "\(path).retry_on").enumerated() {
                out.conditions.formUnion(try retryConditions(item, field: "\(path).retry_on[\(index)]"))
            }
        }
        if let m = r["methods"] {
            switch try string(m, "\(path).methods") {
            case "idempotent": out.allMethods = false
            case "all": out.allMethods = true
            default: throw PolicyError(field: "\(path).methods", problem: "must be idempotent or all")
            }
        }
        if let b = r["backoff"] {
            let bf = try Fields(b, path: "\(path).backoff", allowed: ["base", "max"])
            out.backoffBase = try bf.duration("base") ?? base.backoffBase
            out.backoffMax = try bf.duration("max") ?? base.backoffMax
            guard out.backoffMax >= out.backoffBase else {
                throw PolicyError(field: "\(path).backoff.max", problem: "must not be below backoff.base")
            }
        }
        if let b = r["budget"] {
            let bf = try Fields(b, path: "\(path).budget", allowed: ["percent", "min_retries_per_second", "window"])
            out.budget.percent = try bf.number("percent", 0...1000) ?? base.budget.percent
            out.budget.minRetriesPerSecond = try bf.number("min_retries_per_second", 0...1_000_000) ?? base.budget.minRetriesPerSecond
            out.budget.window = try bf.duration("window") ?? base.budget.window
            guard out.budget.window >= .seconds(1) else { throw PolicyError(field: "\(path).budget.window", problem: "must be at least 1s") }
        }
        if r["buffer_limit"] != nil { out.bufferLimit = try r.size("buffer_limit") }
        return out
    }

    private static func retryConditions(_ text: String, field: String) throws(PolicyError) -> Set<RetryPolicy.Condition> {
        switch text {
        case "connect_failure": return [.connectFailure]
        case "reset": return [.reset]
        case "timeout": return [.timeout]
        case "gateway_error": return [.status(502), .status(503), .status(504)]
        case "5xx": return Set((500...599).map { .status($0) })
        default:
            guard let code = Int(text), (400...599).contains(code) else {
                throw PolicyError(field: field, problem: "\"\(text)\" is not connect_failure, reset, timeout, gateway_error, 5xx or a status 400-599")
            }
            return [.status(code)]
        }
    }

    private static func rateLimit(_ node: Yams.Node, path: String) throws(PolicyError) -> RateLimitPolicy {
        let r = try Fields(node, path: path, allowed: ["requests", "per", "burst", "key"])
        guard let requests = try r.int("requests", 1...100_000_000) else { throw PolicyError(field: "\(path).requests", problem: "is required") }
        let period = try r.duration("per") ?? .seconds(1)
        guard period > .zero else { throw PolicyError(field: "\(path).per", problem: "must be above 0") }
        let burst = try r.int("burst", 1...100_000_000) ?? requests
        var key = RateLimitPolicy.Key.none
        if let k = r["key"] {
            let text = try string(k, "\(path).key")
            if text == "source" {
                key = .source
            } else if text.hasPrefix("header:"), text.count > 7 {
                key = .header(String(text.dropFirst(7)).lowercased())
            } else if text != "none" {
                throw PolicyError(field: "\(path).key", problem: "must be none, source or header:<name>")
            }
        }
        let rate = Double(requests) / (Double(period.nanoseconds) / 1e9)
        return RateLimitPolicy(rate: rate, burst: burst, key: key, requests: requests, period: period)
    }

    private static func loadBalancer(_ node: Yams.Node, _ path: String, base: LoadBalancerPolicy) throws(PolicyError) -> LoadBalancerPolicy {
        var out = base
        if case .scalar = node {
            out.kind = try kind(string(node, path), path)
            return out
        }
        let f = try Fields(node, path: path, allowed: ["policy", "hash_header"])
        if let p = f["policy"] { out.kind = try kind(string(p, "\(path).policy"), "\(path).policy") }
        if let h = f["hash_header"] { out.hashHeader = try string(h, "\(path).hash_header").lowercased() }
        if out.kind == .ringHash && out.hashHeader == nil {
            throw PolicyError(field: "\(path).hash_header", problem: "ring_hash needs the header to hash")
        }
        return out
    }

    private static func kind(_ text: String, _ path: String) throws(PolicyError) -> LoadBalancerPolicy.Kind {
        guard let kind = LoadBalancerPolicy.Kind(rawValue: text) else {
            throw PolicyError(field: path, problem: "\"\(text)\" is not one of \(LoadBalancerPolicy.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return kind
    }

    static func string(_ node: Yams.Node, _ path: String) throws(PolicyError) -> String {
        guard case .scalar(let scalar) = node else { throw PolicyError(field: path, problem: "must be a single value") }
        return scalar.string
    }

    private static func strings(_ node: Yams.Node, _ path: String) throws(PolicyError) -> [String] {
        guard case .sequence(let items) = node else { throw PolicyError(field: path, problem: "must be a list") }
        var out: [String] = []
        for (index, item) in items.enumerated() { out.append(try string(item, "\(path)[\(index)]")) }
        return out
    }
}

/// The fields of one YAML mapping, checked against the names allowed there.
struct Fields {
    let path: String
    let entries: [(String, Yams.Node)]

    init(_ node: Yams.Node, path: String, allowed: [String]?) throws(PolicyError) {
        self.path = path
        guard case .mapping(let mapping) = node else {
            throw PolicyError(field: path.isEmpty ? "(top level)" : path, problem: "must be a mapping of fields")
        }
        var entries: [(String, Yams.Node)] = []
        for (key, value) in mapping {
            let name = try PolicyParser.string(key, path)
            let field = path.isEmpty ? name : "\(path).\(name)"
            if let allowed, !allowed.contains(name) {
                throw PolicyError(field: field, problem: "unknown field (expected one of \(allowed.joined(separator: ", ")))")
            }
            if entries.contains(where: { $0.0 == name }) { throw PolicyError(field: field, problem: "given twice") }
            entries.append((name, value))
        }
        self.entries = entries
    }

    subscript(_ name: String) -> Yams.Node? { entries.first { $0.0 == name }?.1 }

    private func field(_ name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }

    func int(_ name: String, _ range: ClosedRange<Int>) throws(PolicyError) -> Int? {
        guard let node = self[name] else { return nil }
        guard let value = Int(try PolicyParser.string(node, field(name))), range.contains(value) else {
            throw PolicyError(field: field(name), problem: "must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    func number(_ name: String, _ range: ClosedRange<Double>) throws(PolicyError) -> Double? {
        guard let node = self[name] else { return nil }
        guard let value = Double(try PolicyParser.string(node, field(name))), range.contains(value) else {
            throw PolicyError(field: field(name), problem: "must be a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    func bool(_ name: String) throws(PolicyError) -> Bool? {
        guard let node = self[name] else { return nil }
        switch try PolicyParser.string(node, field(name)) {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw PolicyError(field: field(name), problem: "must be true or false")
        }
    }

    func duration(_ name: String) throws(PolicyError) -> TimeAmount? {
        guard let node = self[name] else { return nil }
        let text = try PolicyParser.string(node, field(name))
        guard let nanos = GoDuration.parseNanoseconds(text), nanos >= 0 else {
            throw PolicyError(field: field(name), problem: "\"\(text)\" is not a duration like 250ms, 2s or 1m30s")
        }
        return .nanoseconds(nanos)
    }

    /// A duration where `0` or `none` switches the timeout off.
    func optionalDuration(_ name: String) throws(PolicyError) -> TimeAmount? {
        guard let node = self[name] else { return nil }
        if ["0", "none"].contains(try PolicyParser.string(node, field(name))) { return nil }
        return try duration(name)
    }

    /// A size like `64KiB`, `1MiB` or a byte count.
    func size(_ name: String) throws(PolicyError) -> Int {
        let text = try PolicyParser.string(self[name]!, field(name))
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("KB", 1000), ("MB", 1_000_000), ("B", 1)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            if let n = Int(String(text.dropLast(suffix.count)).filter { $0 != " " }), (0...(64 << 20) / factor).contains(n) {
                return n * factor
            }
        }
        if let n = Int(text), (0...(64 << 20)).contains(n) { return n }
        throw PolicyError(field: field(name), problem: "\"\(text)\" is not a size up to 64MiB like 64KiB")
    }
}
