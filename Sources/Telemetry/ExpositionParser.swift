import Foundation

/// Reads the Prometheus text exposition format 0.0.4 with the rules of Prometheus's own parser:
/// HELP/TYPE comments, escapes, histogram and summary suffixes, `le`/`quantile` labels,
/// NaN/±Inf values and optional millisecond timestamps.
public struct ExpositionParser {
    public struct Failure: Error, CustomStringConvertible, Equatable {
        public var line: Int
        public var message: String
        public var description: String { "line \(line): \(message)" }
    }

    private var families: [MetricFamily] = []
    private var familyIndex: [String: Int] = [:]
    private var sawSamples: Set<Int> = []
    private var typeSeen: Set<Int> = []
    private var lineNumber = 0

    public static func parse(_ text: [UInt8]) throws(Failure) -> [MetricFamily] {
        var parser = ExpositionParser()
        try text.withUnsafeBufferPointer { (buffer: UnsafeBufferPointer<UInt8>) throws(Failure) in
            var start = 0
            while start < buffer.count {
                var end = start
                while end < buffer.count && buffer[end] != 0x0A { end += 1 }
                parser.lineNumber += 1
                var cursor = Cursor(bytes: UnsafeBufferPointer(rebasing: buffer[start..<end]))
                try parser.line(&cursor)
                start = end + 1
            }
        }
        return parser.families
    }

    private func fail(_ message: String) -> Failure { Failure(line: lineNumber, message: message) }

    private mutating func line(_ cursor: inout Cursor) throws(Failure) {
        cursor.skipBlanks()
        guard let first = cursor.peek else { return }
        if first == UInt8(ascii: "#") {
            cursor.advance()
            try comment(&cursor)
        } else {
            try sample(&cursor)
        }
    }

    private mutating func comment(_ cursor: inout Cursor) throws(Failure) {
        cursor.skipBlanks()
        let keyword = cursor.token()
        guard keyword == "HELP" || keyword == "TYPE" else { return }
        cursor.skipBlanks()
        guard let name = cursor.metricName() else { throw fail("invalid metric name in \(keyword) line") }
        if keyword == "HELP" {
            if cursor.peek != nil {
                guard cursor.isBlank(cursor.peek!) else { throw fail("invalid metric name in HELP line") }
                cursor.advance()
            }
            let help: String
            do { help = try cursor.helpText() } catch { throw fail(error.message) }
            let index = family(named: name)
            guard families[index].help == nil else { throw fail("second HELP line for metric name \"\(name)\"") }
            families[index].help = help
        } else {
            cursor.skipBlanks()
            let typeName = cursor.token()
            cursor.skipBlanks()
            guard cursor.peek == nil, let type = MetricType(rawValue: typeName) else {
                throw fail("unknown metric type \"\(typeName)\"")
            }
            let index = family(named: name)
            guard !typeSeen.contains(index) else { throw fail("second TYPE line for metric name \"\(name)\"") }
            guard !sawSamples.contains(index) else { throw fail("TYPE line for \"\(name)\" after its samples") }
            typeSeen.insert(index)
            families[index].type = type
        }
    }

    private mutating func family(named name: String) -> Int {
        if let index = familyIndex[name] { return index }
        families.append(MetricFamily(name: name))
        familyIndex[name] = families.count - 1
        return families.count - 1
    }

    /// The family a sample belongs to: its own name, or a histogram/summary it is a series of.
    private mutating func familyFor(sample name: String) -> Int {
        if let last = families.indices.last, families[last].name == name { return last }
        if let index = familyIndex[name] { return index }
        for suffix in ["_bucket", "_count", "_sum"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if let index = familyIndex[base] {
                let type = families[index].type
                if type == .histogram || (type == .summary && suffix != "_bucket") { return index }
            }
        }
        return family(named: name)
    }

    private mutating func sample(_ cursor: inout Cursor) throws(Failure) {
        guard let name = cursor.metricName() else { throw fail("invalid metric name") }
        var labels: [Label] = []
        cursor.skipBlanks()
        if cursor.peek == UInt8(ascii: "{") {
            cursor.advance()
            while true {
                cursor.skipBlanks()
                if cursor.peek == UInt8(ascii: "}") { cursor.advance(); break }
                guard let labelName = cursor.labelName() else { throw fail("invalid label name for metric \"\(name)\"") }
                cursor.skipBlanks()
                guard cursor.peek == UInt8(ascii: "=") else { throw fail("expected '=' after label name \"\(labelName)\"") }
                cursor.advance()
                cursor.skipBlanks()
                guard cursor.peek == UInt8(ascii: "\"") else { throw fail("expected '\"' to start the value of label \"\(labelName)\"") }
                cursor.advance()
                let value: String
                do { value = try cursor.quotedValue() } catch { throw fail(error.message) }
                guard !labels.contains(where: { $0.name == labelName }) else {
                    throw fail("duplicate label name \"\(labelName)\" for metric \"\(name)\"")
                }
                labels.append(Label(labelName, value))
                cursor.skipBlanks()
                if cursor.peek == UInt8(ascii: ",") { cursor.advance(); continue }
                guard cursor.peek == UInt8(ascii: "}") else { throw fail("expected ',' or '}' after label value") }
                cursor.advance()
                break
            }
        }
        cursor.skipBlanks()
        guard let value = cursor.value() else { throw fail("invalid value \"\(cursor.token())\" for metric \"\(name)\"") }
        cursor.skipBlanks()
        var timestamp: Int64?
        if cursor.peek != nil {
            let text = cursor.token()
            guard let parsed = Int64(text) else { throw fail("invalid timestamp \"\(text)\"") }
            timestamp = parsed
            cursor.skipBlanks()
            guard cursor.peek == nil else { throw fail("unexpected text after the timestamp") }
        }
        let index = familyFor(sample: name)
        switch families[index].type {
        case .histogram where name.hasSuffix("_bucket"):
            guard let le = labels.first(where: { $0.name == "le" }), Self.parseValue(le.value) != nil else {
                throw fail("histogram bucket \"\(name)\" needs a numeric \"le\" label")
            }
        case .summary where name == families[index].name:
            guard let quantile = labels.first(where: { $0.name == "quantile" }), Self.parseValue(quantile.value) != nil else {
                throw fail("summary \"\(name)\" needs a numeric \"quantile\" label")
            }
        default: break
        }
        sawSamples.insert(index)
        families[index].samples.append(Sample(name: name, labels: labels, value: value, timestampMs: timestamp))
    }

    /// Go's `strconv.ParseFloat` spellings as far as expositions use them.
    static func parseValue(_ text: String) -> Double? {
        switch text {
        case "NaN": return .nan
        case "+Inf", "Inf": return .infinity
        case "-Inf": return -.infinity
        default:
            guard let first = text.utf8.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") || first == UInt8(ascii: ".")
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { return nil }
            return Double(text)
        }
    }
}

/// A position in one line.
private struct Cursor {
    let bytes: UnsafeBufferPointer<UInt8>
    var position = 0

    var peek: UInt8? { position < bytes.count ? bytes[position] : nil }

    mutating func advance() { position += 1 }

    func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }

    mutating func skipBlanks() {
        while position < bytes.count && isBlank(bytes[position]) { position += 1 }
    }

    /// Up to the next blank or the end of the line.
    mutating func token() -> String {
        let start = position
        while position < bytes.count && !isBlank(bytes[position]) { position += 1 }
        return string(start, position)
    }

    /// A sample value: plain decimals are read directly (one exact division, so correctly
    /// rounded); anything else (exponents, NaN, ±Inf, long mantissas) goes through `parseValue`.
    mutating func value() -> Double? {
        let start = position
        var negative = false
        if peek == UInt8(ascii: "-") { negative = true; position += 1 }
        var mantissa: UInt64 = 0, digits = 0, scale = 0
        var seenPoint = false
        while let c = peek, !isBlank(c) {
            if c >= 0x30 && c <= 0x39 {
                mantissa = mantissa &* 10 &+ UInt64(c - 0x30)
                digits += 1
                if seenPoint { scale += 1 }
            } else if c == UInt8(ascii: "."), !seenPoint {
                seenPoint = true
            } else {
                digits = 99  // not a plain decimal
            }
            position += 1
        }
        if digits > 0 && digits <= 15 {
            let magnitude = scale == 0 ? Double(mantissa) : Double(mantissa) / Self.powersOfTen[scale]
            return negative ? -magnitude : magnitude
        }
        return ExpositionParser.parseValue(string(start, position))
    }

    private static let powersOfTen: [Double] = (0...15).map { pow(10, Double($0)) }

    func string(_ start: Int, _ end: Int) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
    }

    private static func isNameStart(_ c: UInt8, colon: Bool) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || c == UInt8(ascii: "_") || (colon && c == UInt8(ascii: ":"))
    }

    private mutating func name(colon: Bool) -> String? {
        let start = position
        guard let first = peek, Self.isNameStart(first, colon: colon) else { return nil }
        position += 1
        while let c = peek, Self.isNameStart(c, colon: colon) || (c >= 0x30 && c <= 0x39) { position += 1 }
        return string(start, position)
    }

    mutating func metricName() -> String? { name(colon: true) }
    mutating func labelName() -> String? { name(colon: false) }

    /// A label value after its opening quote, through the closing quote.
    mutating func quotedValue() throws(Problem) -> String {
        var out: [UInt8] = []
        while let c = peek {
            position += 1
            switch c {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard let escaped = peek else { throw Problem(message: "unterminated escape in label value") }
                position += 1
                switch escaped {
                case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
                case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
                case UInt8(ascii: "n"): out.append(0x0A)
                default: throw Problem(message: "invalid escape sequence '\\\(Character(Unicode.Scalar(escaped)))' in label value")
                }
            default:
                out.append(c)
            }
        }
        throw Problem(message: "label value without closing quote")
    }

    /// The rest of a HELP line, unescaping `\\` and `\n`.
    mutating func helpText() throws(Problem) -> String {
        var out: [UInt8] = []
        while let c = peek {
            position += 1
            if c == UInt8(ascii: "\\") {
                guard let escaped = peek else { throw Problem(message: "unterminated escape in HELP text") }
                position += 1
                switch escaped {
                case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
                case UInt8(ascii: "n"): out.append(0x0A)
                default: throw Problem(message: "invalid escape sequence '\\\(Character(Unicode.Scalar(escaped)))' in HELP text")
                }
            } else {
                out.append(c)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// A problem found inside a line; the parser adds the line number.
private struct Problem: Error {
    var message: String
}
