import TrellisCore
import TrellisHTTP

/// Consul's `?filter=` expressions (go-bexpr) evaluated against the JSON of each result item.
///
/// Supports `==`, `!=`, `contains`, `not contains`, `in`, `not in`, `is empty`, `is not empty`,
/// `and`, `or`, `not` and parentheses; selectors are field paths such as `Service`, `Meta.env`, `Tags`.
struct FilterExpression: Sendable {
    indirect enum Node: Sendable {
        case and(Node, Node)
        case or(Node, Node)
        case not(Node)
        case compare(selector: [String], op: Operator, value: String)
        case empty(selector: [String], negated: Bool)
    }

    enum Operator: Sendable { case equal, notEqual, contains, notContains }

    struct SyntaxError: Error, CustomStringConvertible {
        let description: String
    }

    let root: Node

    init(_ text: String) throws {
        var parser = Parser(tokens: try Self.tokenize(text))
        root = try parser.parseOr()
        guard parser.atEnd else { throw SyntaxError(description: "unexpected \"\(parser.peek ?? "")\"") }
    }

    /// Keeps the items of an array, or the values of an object, that match.
    func apply(to value: JSON) -> JSON {
        switch value {
        case .array(let items): .array(items.filter { matches($0) })
        case .object(let object): .object(JSONObject(object.pairs.filter { matches($0.value) }))
        default: value
        }
    }

    func matches(_ item: JSON) -> Bool { evaluate(root, item) }

    private func evaluate(_ node: Node, _ item: JSON) -> Bool {
        switch node {
        case .and(let a, let b): return evaluate(a, item) && evaluate(b, item)
        case .or(let a, let b): return evaluate(a, item) || evaluate(b, item)
        case .not(let a): return !evaluate(a, item)
        case .empty(let selector, let negated):
            let empty: Bool
            switch resolve(selector, in: item) {
            case nil, .null?: empty = true
            case .string(let s)?: empty = s.isEmpty
            case .array(let a)?: empty = a.isEmpty
            case .object(let o)?: empty = o.pairs.isEmpty
            default: empty = false
            }
            return empty != negated
        case .compare(let selector, let op, let value):
            let field = resolve(selector, in: item)
            switch op {
            case .equal: return Self.equals(field, value)
            case .notEqual: return !Self.equals(field, value)
            case .contains: return Self.contains(field, value)
            case .notContains: return !Self.contains(field, value)
            }
        }
    }

    private func resolve(_ selector: [String], in item: JSON) -> JSON? {
        var current: JSON? = item
        for part in selector {
            guard let object = current?.objectValue else { return nil }
            current = object[exact: part] ?? object.field(part)
        }
        return current
    }

    private static func equals(_ field: JSON?, _ value: String) -> Bool {
        switch field {
        case .string(let s)?: s == value
        case .int(let i)?: Int64(value) == i
        case .uint(let u)?: UInt64(value) == u
        case .double(let d)?: Double(value) == d
        case .bool(let b)?: GoBool.parse(value) == b
        default: false
        }
    }

    private static func contains(_ field: JSON?, _ value: String) -> Bool {
        switch field {
        case .string(let s)?: s.contains(value)
        case .array(let items)?: items.contains { equals($0, value) }
        case .object(let o)?: o[exact: value] != nil
        default: false
        }
    }

    // MARK: Parsing

    /// Separates the bracketed keys of an index selector within its token (keys may contain dots).
    private static let indexSeparator: Character = "\u{1}"

    private static func tokenize(_ text: String) throws -> [String] {
        var tokens: [String] = []
        var chars = Array(text)[...]
        while let c = chars.first {
            if c.isWhitespace { chars = chars.dropFirst(); continue }
            if c == "(" || c == ")" { tokens.append(String(c)); chars = chars.dropFirst(); continue }
            if c == "=" || c == "!" {
                guard chars.dropFirst().first == "=" else { throw SyntaxError(description: "expected \(c)=") }
                tokens.append(String(c) + "="); chars = chars.dropFirst(2); continue
            }
            if c == "\"" || c == "`" {
                var value = "\u{0}"
                chars = chars.dropFirst()
                while let d = chars.first, d != c {
                    if d == "\\" && c == "\"", let next = chars.dropFirst().first {
                        value.append(next); chars = chars.dropFirst(2)
                    } else {
                        value.append(d); chars = chars.dropFirst()
                    }
                }
                guard chars.first == c else { throw SyntaxError(description: "unterminated string") }
                chars = chars.dropFirst()
                tokens.append(value)
                continue
            }
            let word = chars.prefix { !$0.isWhitespace && !"()=!\"`[".contains($0) }
            var token = String(word)
            chars = chars.dropFirst(word.count)
            // Index selectors: `NodeMeta["env"]`, `Meta[`key`]`; each key joins the selector as one segment.
            while chars.first == "[", !token.isEmpty {
                chars = chars.dropFirst()
                guard let quote = chars.first, quote == "\"" || quote == "`" else {
                    throw SyntaxError(description: "expected a quoted key after [")
                }
                let key = chars.dropFirst().prefix { $0 != quote }
                chars = chars.dropFirst(key.count + 1)
                guard chars.first == quote, chars.dropFirst().first == "]" else {
                    throw SyntaxError(description: "expected \(quote)] to close the index of \(token)")
                }
                chars = chars.dropFirst(2)
                token += String(Self.indexSeparator) + String(key)
            }
            tokens.append(token)
        }
        return tokens
    }

    private struct Parser {
        let tokens: [String]
        var pos = 0

        var atEnd: Bool { pos >= tokens.count }
        var peek: String? { atEnd ? nil : tokens[pos] }

        mutating func take() throws -> String {
            guard let token = peek else { throw SyntaxError(description: "unexpected end of expression") }
            pos += 1
            return token
        }

        mutating func parseOr() throws -> Node {
            var node = try parseAnd()
            while peek == "or" { pos += 1; node = .or(node, try parseAnd()) }
            return node
        }

        mutating func parseAnd() throws -> Node {
            var node = try parseNot()
            while peek == "and" { pos += 1; node = .and(node, try parseNot()) }
            return node
        }

        mutating func parseNot() throws -> Node {
            if peek == "not" { pos += 1; return .not(try parseNot()) }
            if peek == "(" {
                pos += 1
                let inner = try parseOr()
                guard try take() == ")" else { throw SyntaxError(description: "expected )") }
                return inner
            }
            return try parseMatch()
        }

        static func literal(_ token: String) -> String {
            token.hasPrefix("\u{0}") ? String(token.dropFirst()) : token
        }

        static func selector(_ token: String) throws -> [String] {
            guard !token.hasPrefix("\u{0}"), !token.isEmpty else { throw SyntaxError(description: "expected a selector") }
            let parts = token.split(separator: FilterExpression.indexSeparator, omittingEmptySubsequences: false)
            return parts[0].split(separator: ".").map(String.init) + parts.dropFirst().map(String.init)
        }

        mutating func parseMatch() throws -> Node {
            let first = try take()
            switch peek {
            case "in":
                pos += 1
                return .compare(selector: try Self.selector(try take()), op: .contains, value: Self.literal(first))
            case "not" where tokens.count > pos + 1 && tokens[pos + 1] == "in":
                pos += 2
                return .compare(selector: try Self.selector(try take()), op: .notContains, value: Self.literal(first))
            default:
                break
            }
            let selector = try Self.selector(first)
            switch try take() {
            case "==": return .compare(selector: selector, op: .equal, value: Self.literal(try take()))
            case "!=": return .compare(selector: selector, op: .notEqual, value: Self.literal(try take()))
            case "contains": return .compare(selector: selector, op: .contains, value: Self.literal(try take()))
            case "not":
                guard try take() == "contains" else { throw SyntaxError(description: "expected contains after not") }
                return .compare(selector: selector, op: .notContains, value: Self.literal(try take()))
            case "is":
                var negated = false
                if peek == "not" { pos += 1; negated = true }
                guard try take() == "empty" else { throw SyntaxError(description: "expected empty after is") }
                return .empty(selector: selector, negated: negated)
            case let other:
                throw SyntaxError(description: "unsupported operator \"\(Self.literal(other))\"")
            }
        }
    }
}
