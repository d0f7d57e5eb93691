import Telemetry

/// A PromQL/LogQL series selector: `name{a="x", b!="y", c=~"re", d!~"re"}`.
public struct LabelSelector: Sendable {
    public enum Operator: String, Sendable {
        case equal = "=", notEqual = "!=", matches = "=~", notMatches = "!~"
    }

    public struct Matcher: @unchecked Sendable {
        public var name: String
        public var op: Operator
        public var value: String
        /// Anchored, like Prometheus regular-expression matchers. Immutable once built.
        let regex: Regex<AnyRegexOutput>?

        init(name: String, op: Operator, value: String) throws(SelectorError) {
            self.name = name
            self.op = op
            self.value = value
            if op == .matches || op == .notMatches {
                do { regex = try Regex(value) } catch { throw SelectorError("invalid regular expression \"\(value)\"") }
            } else {
                regex = nil
            }
        }

        public func matches(_ actual: String) -> Bool {
            switch op {
            case .equal: actual == value
            case .notEqual: actual != value
            case .matches: (try? regex!.wholeMatch(in: actual)) != nil
            case .notMatches: (try? regex!.wholeMatch(in: actual)) == nil
            }
        }
    }

    public var matchers: [Matcher]

    /// True when every matcher accepts the labels (a missing label reads as "").
    public func matches(_ lookup: (String) -> String?) -> Bool {
        matchers.allSatisfy { $0.matches(lookup($0.name) ?? "") }
    }

    public func matches(_ labels: [Label]) -> Bool {
        matches { name in labels.first { $0.name == name }?.value }
    }

    /// Parses a whole selector and nothing else.
    public static func parse(_ text: String) throws(SelectorError) -> LabelSelector {
        var scanner = SelectorScanner(text)
        let selector = try scanner.selector()
        scanner.skipSpaces()
        guard scanner.atEnd else { throw SelectorError("unexpected \"\(scanner.remainder)\" after the selector") }
        return selector
    }
}

public struct SelectorError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// A LogQL log query as far as the collector answers it: a stream selector and line filters.
public struct LogQuery: Sendable {
    public enum LineFilter: @unchecked Sendable {
        case contains(String), notContains(String)
        case matches(Regex<AnyRegexOutput>), notMatches(Regex<AnyRegexOutput>)

        func accepts(_ line: String) -> Bool {
            switch self {
            case .contains(let text): text.isEmpty || line.contains(text)
            case .notContains(let text): text.isEmpty || !line.contains(text)
            case .matches(let regex): (try? regex.firstMatch(in: line)) != nil
            case .notMatches(let regex): (try? regex.firstMatch(in: line)) == nil
            }
        }
    }

    public var selector: LabelSelector
    public var filters: [LineFilter]

    public func accepts(line: String) -> Bool { filters.allSatisfy { $0.accepts(line) } }

    public static func parse(_ text: String) throws(SelectorError) -> LogQuery {
        var scanner = SelectorScanner(text)
        let selector = try scanner.selector()
        guard !selector.matchers.isEmpty else { throw SelectorError("queries require at least one label matcher") }
        var filters: [LineFilter] = []
        while true {
            scanner.skipSpaces()
            if scanner.atEnd { break }
            let op = scanner.take(oneOf: ["|=", "!=", "|~", "!~"])
            guard let op else { throw SelectorError("unsupported query part \"\(scanner.remainder)\": only line filters (|= != |~ !~) may follow the selector") }
            scanner.skipSpaces()
            let value = try scanner.stringLiteral()
            switch op {
            case "|=": filters.append(.contains(value))
            case "!=": filters.append(.notContains(value))
            default:
                let regex: Regex<AnyRegexOutput>
                do { regex = try Regex(value) } catch { throw SelectorError("invalid regular expression \"\(value)\"") }
                filters.append(op == "|~" ? .matches(regex) : .notMatches(regex))
            }
        }
        return LogQuery(selector: selector, filters: filters)
    }
}

/// Reads selectors character by character.
struct SelectorScanner {
    private let characters: [Character]
    private var position = 0

    init(_ text: String) { characters = Array(text) }

    var atEnd: Bool { position >= characters.count }
    var remainder: String { String(characters[position...]) }

    mutating func skipSpaces() {
        while !atEnd && characters[position].isWhitespace { position += 1 }
    }

    mutating func take(oneOf options: [String]) -> String? {
        for option in options {
            let end = position + option.count
            if end <= characters.count && String(characters[position..<end]) == option {
                position = end
                return option
            }
        }
        return nil
    }

    private mutating func identifier(colon: Bool) -> String {
        let start = position
        while !atEnd {
            let c = characters[position]
            let ok = c == "_" || (colon && c == ":") || (c.isASCII && c.isLetter) || (position > start && c.isASCII && c.isNumber)
            guard ok else { break }
            position += 1
        }
        return String(characters[start..<position])
    }

    /// `[metric_name] [{matchers}]`; a metric name becomes a `__name__` matcher.
    mutating func selector() throws(SelectorError) -> LabelSelector {
        skipSpaces()
        var matchers: [LabelSelector.Matcher] = []
        let metric = identifier(colon: true)
        if !metric.isEmpty { matchers.append(try LabelSelector.Matcher(name: "__name__", op: .equal, value: metric)) }
        skipSpaces()
        if !atEnd && characters[position] == "{" {
            position += 1
            while true {
                skipSpaces()
                if !atEnd && characters[position] == "}" { position += 1; break }
                let name = identifier(colon: false)
                guard !name.isEmpty else { throw SelectorError("expected a label name at \"\(remainder)\"") }
                skipSpaces()
                guard let op = take(oneOf: ["=~", "!~", "!=", "="]).flatMap(LabelSelector.Operator.init) else {
                    throw SelectorError("expected =, !=, =~ or !~ after \"\(name)\"")
                }
                skipSpaces()
                matchers.append(try LabelSelector.Matcher(name: name, op: op, value: try stringLiteral()))
                skipSpaces()
                if !atEnd && characters[position] == "," { position += 1; continue }
                guard !atEnd && characters[position] == "}" else { throw SelectorError("expected , or } at \"\(remainder)\"") }
                position += 1
                break
            }
        } else if metric.isEmpty {
            throw SelectorError("expected a metric name or {")
        }
        return LabelSelector(matchers: matchers)
    }

    /// A double-quoted string with Go escapes, or a back-quoted raw string.
    mutating func stringLiteral() throws(SelectorError) -> String {
        guard !atEnd, characters[position] == "\"" || characters[position] == "`" else {
            throw SelectorError("expected a quoted string at \"\(remainder)\"")
        }
        let quote = characters[position]
        position += 1
        var out = ""
        while !atEnd {
            let c = characters[position]
            position += 1
            if c == quote { return out }
            if c == "\\" && quote == "\"" {
                guard !atEnd else { break }
                let escaped = characters[position]
                position += 1
                switch escaped {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "\\", "\"": out.append(escaped)
                default: throw SelectorError("invalid escape \\\(escaped) in string")
                }
            } else {
                out.append(c)
            }
        }
        throw SelectorError("unterminated string")
    }
}
