import TrellisCore

/// A rule document's syntax tree: what Consul's rule language (HCL 1) and its JSON form both parse to.
///
/// `key_prefix "app/" { policy = "read" }` is the node `key_prefix` whose value is an object
/// holding the node `app/`, whose value is the object `{ policy = "read" }`. Lines are kept for
/// error messages (0 for JSON, which has no lines worth naming).
struct RuleNode: Equatable {
    let key: String
    let value: RuleValue
    let line: Int
}

indirect enum RuleValue: Equatable {
    case string(String)
    case object([RuleNode])
    /// Numbers, booleans and lists: valid syntax, never a valid rule value.
    case other(String)
}

/// A rule document that does not parse, with where.
public struct RuleSyntaxError: Error, Equatable, CustomStringConvertible {
    public let line: Int
    public let column: Int
    public let message: String

    public var description: String { line > 0 ? "At \(line):\(column): \(message)" : message }
}

/// Parses the subset of HCL 1 that ACL rules are written in: `name = value`, `name "label" … { … }`,
/// strings, numbers, booleans, lists and objects, `#`, `//` and `/* */` comments, optional commas.
/// Input starting with `{` is taken as JSON, as Consul does.
enum HCLRules {
    /// The deepest nesting accepted; rules need three levels.
    static let maxDepth = 16

    static func parse(_ text: String) throws(RuleSyntaxError) -> [RuleNode] {
        if text.drop(while: \.isWhitespace).first == "{" { return try parseJSON(text) }
        var parser = Parser(Array(text.utf8))
        return try parser.document()
    }

    private static func parseJSON(_ text: String) throws(RuleSyntaxError) -> [RuleNode] {
        let json: JSON
        do {
            json = try JSON.parse(text)
        } catch {
            throw RuleSyntaxError(line: 0, column: 0, message: "\(error)")
        }
        guard case .object(let object) = json else { throw RuleSyntaxError(line: 0, column: 0, message: "rules must be a JSON object") }
        return nodes(object)
    }

    private static func nodes(_ object: JSONObject) -> [RuleNode] {
        object.pairs.map { pair in
            let value: RuleValue = switch pair.value {
            case .string(let s): .string(s)
            case .object(let inner): .object(nodes(inner))
            default: .other(pair.value.text)
            }
            return RuleNode(key: pair.key, value: value, line: 0)
        }
    }

    private struct Parser {
        let bytes: [UInt8]
        var at = 0
        var line = 1
        var lineStart = 0

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        mutating func document() throws(RuleSyntaxError) -> [RuleNode] {
            let items = try body(depth: 0)
            skipSpace()
            if at < bytes.count { throw fail("unexpected \(describe(bytes[at]))") }
            return items
        }

        /// Items until `}` or the end.
        private mutating func body(depth: Int) throws(RuleSyntaxError) -> [RuleNode] {
            guard depth < HCLRules.maxDepth else { throw fail("rules nest deeper than \(HCLRules.maxDepth) levels") }
            var items: [RuleNode] = []
            while true {
                skipSpace()
                guard at < bytes.count, bytes[at] != UInt8(ascii: "}") else { return items }
                items.append(try item(depth: depth))
                skipSpace()
                if at < bytes.count, bytes[at] == UInt8(ascii: ",") { at += 1 }
            }
        }

        /// `key label… { … }` or `key = value`.
        private mutating func item(depth: Int) throws(RuleSyntaxError) -> RuleNode {
            let itemLine = line
            var keys = [try key()]
            while true {
                skipSpace()
                guard at < bytes.count else { throw fail("expected '=' or '{' after \"\(keys[keys.count - 1])\"") }
                switch bytes[at] {
                case UInt8(ascii: "="):
                    at += 1
                    return nest(keys, try value(depth: depth), line: itemLine)
                case UInt8(ascii: "{"):
                    return nest(keys, try value(depth: depth), line: itemLine)
                case UInt8(ascii: "\""):
                    keys.append(try string())
                default:
                    throw fail("expected '=' or '{' after \"\(keys[keys.count - 1])\", found \(describe(bytes[at]))")
                }
            }
        }

        private func nest(_ keys: [String], _ value: RuleValue, line: Int) -> RuleNode {
            var node = RuleNode(key: keys[keys.count - 1], value: value, line: line)
            for key in keys.dropLast().reversed() { node = RuleNode(key: key, value: .object([node]), line: line) }
            return node
        }

        private mutating func key() throws(RuleSyntaxError) -> String {
            skipSpace()
            guard at < bytes.count else { throw fail("unexpected end of rules") }
            if bytes[at] == UInt8(ascii: "\"") { return try string() }
            let start = at
            while at < bytes.count, Self.isIdentifier(bytes[at]) { at += 1 }
            guard at > start else { throw fail("expected a name, found \(describe(bytes[at]))") }
            return String(decoding: bytes[start..<at], as: UTF8.self)
        }

        private mutating func value(depth: Int) throws(RuleSyntaxError) -> RuleValue {
            skipSpace()
            guard at < bytes.count else { throw fail("expected a value") }
            switch bytes[at] {
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "{"):
                at += 1
                let items = try body(depth: depth + 1)
                guard at < bytes.count else { throw fail("expected '}' to close the block") }
                at += 1
                return .object(items)
            case UInt8(ascii: "["):
                at += 1
                var count = 0
                while true {
                    skipSpace()
                    guard at < bytes.count else { throw fail("expected ']' to close the list") }
                    if bytes[at] == UInt8(ascii: "]") { at += 1; return .other("list of \(count)") }
                    _ = try value(depth: depth + 1)
                    count += 1
                    skipSpace()
                    if at < bytes.count, bytes[at] == UInt8(ascii: ",") { at += 1 }
                }
            default:
                let start = at
                while at < bytes.count, Self.isIdentifier(bytes[at]) || bytes[at] == UInt8(ascii: ".") { at += 1 }
                guard at > start else { throw fail("expected a value, found \(describe(bytes[at]))") }
                let word = String(decoding: bytes[start..<at], as: UTF8.self)
                guard word == "true" || word == "false" || Double(word) != nil else {
                    throw RuleSyntaxError(line: line, column: start - lineStart + 1, message: "unquoted value \"\(word)\"")
                }
                return .other(word)
            }
        }

        private mutating func string() throws(RuleSyntaxError) -> String {
            at += 1
            var out: [UInt8] = []
            while at < bytes.count {
                let byte = bytes[at]
                at += 1
                switch byte {
                case UInt8(ascii: "\""):
                    return String(decoding: out, as: UTF8.self)
                case UInt8(ascii: "\n"):
                    throw fail("string not closed before the end of the line")
                case UInt8(ascii: "\\"):
                    guard at < bytes.count else { break }
                    let escaped = bytes[at]
                    at += 1
                    switch escaped {
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(escaped)
                    default: throw fail("unknown escape \\\(describe(escaped))")
                    }
                default:
                    out.append(byte)
                }
            }
            throw fail("string not closed")
        }

        private mutating func skipSpace() {
            while at < bytes.count {
                switch bytes[at] {
                case UInt8(ascii: "\n"):
                    at += 1
                    line += 1
                    lineStart = at
                case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"):
                    at += 1
                case UInt8(ascii: "#"):
                    while at < bytes.count, bytes[at] != UInt8(ascii: "\n") { at += 1 }
                case UInt8(ascii: "/") where at + 1 < bytes.count && bytes[at + 1] == UInt8(ascii: "/"):
                    while at < bytes.count, bytes[at] != UInt8(ascii: "\n") { at += 1 }
                case UInt8(ascii: "/") where at + 1 < bytes.count && bytes[at + 1] == UInt8(ascii: "*"):
                    at += 2
                    while at < bytes.count, !(bytes[at] == UInt8(ascii: "*") && at + 1 < bytes.count && bytes[at + 1] == UInt8(ascii: "/")) {
                        if bytes[at] == UInt8(ascii: "\n") { line += 1; lineStart = at + 1 }
                        at += 1
                    }
                    at = min(at + 2, bytes.count)
                default:
                    return
                }
            }
        }

        private static func isIdentifier(_ byte: UInt8) -> Bool {
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }

        private func describe(_ byte: UInt8) -> String {
            byte >= 0x20 && byte < 0x7F ? "'\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(String(byte, radix: 16))"
        }

        private func fail(_ message: String) -> RuleSyntaxError {
            RuleSyntaxError(line: line, column: at - lineStart + 1, message: message)
        }
    }
}
