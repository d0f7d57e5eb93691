import Foundation
import NIOCore
import NIOHTTP1
import Policy

/// What a gateway rule adds to a route: its HTTPRoute matches, the path rewrite, who may call it
/// (JWT or API key), CORS and the request body limit. Made when a policy is applied; confined to
/// the data-plane loop.
final class EdgeRoute {
    let rule: GatewayRule
    private let matches: [CompiledMatch]

    init(_ rule: GatewayRule) {
        self.rule = rule
        matches = rule.matches.map(CompiledMatch.init)
    }

    /// Whether the request selects this rule. A CORS preflight is matched as the request it announces.
    func matches(_ head: MessageHead, method: String) -> Bool {
        guard !matches.isEmpty else { return true }
        let target = head.target
        let mark = target.firstIndex(of: "?")
        let path = target[..<(mark ?? target.endIndex)]
        let query = mark.map { target[target.index(after: $0)...] } ?? ""
        return matches.contains { $0.accepts(path: path, query: query, method: method, head: head) }
    }

    /// The request target sent to the backend, when the rule rewrites: the whole path replaced
    /// (the query kept), or the matched prefix.
    func upstreamTarget(_ target: String) -> String? {
        if let path = rule.replaceFullPath {
            return target.firstIndex(of: "?").map { path + target[$0...] } ?? path
        }
        guard let replacement = rule.replacePrefix else { return nil }
        for match in rule.matches {
            guard case .prefix(let prefix) = match.path, CompiledMatch.pathHasPrefix(Substring(target), prefix) else { continue }
            var rest = target.dropFirst(prefix.count)
            if replacement.hasSuffix("/") && rest.hasPrefix("/") { rest = rest.dropFirst() }
            let joined = replacement + rest
            return joined.hasPrefix("/") ? joined : "/" + joined
        }
        return nil
    }
}

/// One `matches` entry, its regular expressions compiled once.
struct CompiledMatch {
    private enum Path {
        case exact(String), prefix(String), regularExpression(Regex<AnyRegexOutput>)
    }

    private struct Value {
        let name: String
        let exact: String?
        let pattern: Regex<AnyRegexOutput>?

        init(_ value: GatewayMatch.Value) {
            name = value.name
            exact = value.isRegularExpression ? nil : value.value
            pattern = value.isRegularExpression ? try? Regex(value.value) : nil
        }

        func accepts(_ actual: String?) -> Bool {
            guard let actual else { return false }
            if let exact { return actual == exact }
            return pattern.map { (try? $0.wholeMatch(in: actual)) != nil } ?? false
        }
    }

    private let path: Path
    private let method: String?
    private let headers: [Value]
    private let queryParams: [Value]

    init(_ match: GatewayMatch) {
        switch match.path {
        case .exact(let value): path = .exact(value)
        case .prefix(let value): path = .prefix(value)
        // The parser checked the pattern; one that fails anyway matches nothing.
        case .regularExpression(let value): path = (try? Regex(value)).map { .regularExpression($0) } ?? .exact("\u{0}")
        }
        method = match.method
        headers = match.headers.map(Value.init)
        queryParams = match.queryParams.map(Value.init)
    }

    func accepts(path requestPath: Substring, query: Substring, method requestMethod: String, head: MessageHead) -> Bool {
        switch path {
        case .exact(let value): guard requestPath == value else { return false }
        case .prefix(let value): guard Self.pathHasPrefix(requestPath, value) else { return false }
        case .regularExpression(let pattern): guard (try? pattern.wholeMatch(in: String(requestPath))) != nil else { return false }
        }
        if let method, method != requestMethod { return false }
        for header in headers where !header.accepts(head.first(name: header.name)) { return false }
        if !queryParams.isEmpty {
            let parameters = Self.queryParameters(query)
            for parameter in queryParams where !parameter.accepts(parameters.first { $0.0 == parameter.name }?.1) { return false }
        }
        return true
    }

    /// Gateway API's `PathPrefix`: a match of whole path segments (`/api` takes `/api` and
    /// `/api/x`, not `/apix`).
    static func pathHasPrefix(_ path: Substring, _ prefix: String) -> Bool {
        guard path.hasPrefix(prefix) else { return false }
        if prefix.hasSuffix("/") || path.count == prefix.count { return true }
        let next = path[path.index(path.startIndex, offsetBy: prefix.count)]
        return next == "/" || next == "?"
    }

    private static func queryParameters(_ query: Substring) -> [(String, String)] {
        query.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (text: Substring) in text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(text) }
            return (decode(parts[0]), parts.count > 1 ? decode(parts[1]) : "")
        }
    }
}
