/// The Prometheus text exposition format 0.0.4: model and writer.
public enum MetricType: String, Sendable, CaseIterable {
    case counter, gauge, histogram, summary, untyped
}

public struct Label: Hashable, Sendable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

public struct Sample: Sendable {
    public var name: String
    public var labels: [Label]
    public var value: Double
    /// Milliseconds since the epoch, when the exposition gave one.
    public var timestampMs: Int64?

    public init(name: String, labels: [Label] = [], value: Double, timestampMs: Int64? = nil) {
        self.name = name
        self.labels = labels
        self.value = value
        self.timestampMs = timestampMs
    }

    public func label(_ name: String) -> String? { labels.first { $0.name == name }?.value }
}

public struct MetricFamily: Sendable {
    public var name: String
    public var help: String?
    public var type: MetricType
    public var samples: [Sample]

    public init(name: String, help: String? = nil, type: MetricType = .untyped, samples: [Sample] = []) {
        self.name = name
        self.help = help
        self.type = type
        self.samples = samples
    }
}

public enum Exposition {
    public static func render(_ families: [MetricFamily]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(families.reduce(0) { $0 + 128 + $1.samples.count * 112 })
        for family in families {
            writeHeader(name: family.name, help: family.help, type: family.type, into: &out)
            for sample in family.samples { writeSample(sample, into: &out) }
        }
        return out
    }

    /// `# HELP` (when there is help) and `# TYPE` lines.
    public static func writeHeader(name: String, help: String?, type: MetricType, into out: inout [UInt8]) {
        if let help {
            out.append(contentsOf: "# HELP ".utf8)
            out.append(contentsOf: name.utf8)
            out.append(0x20)
            for byte in help.utf8 {
                switch byte {
                case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
                case UInt8(ascii: "\n"): out.append(contentsOf: #"\n"#.utf8)
                default: out.append(byte)
                }
            }
            out.append(0x0A)
        }
        out.append(contentsOf: "# TYPE ".utf8)
        out.append(contentsOf: name.utf8)
        out.append(0x20)
        out.append(contentsOf: type.rawValue.utf8)
        out.append(0x0A)
    }

    public static func writeSample(_ sample: Sample, into out: inout [UInt8]) {
        appendUTF8(sample.name, to: &out)
        writeLabels(sample.labels, into: &out)
        out.append(0x20)
        writeValue(sample.value, into: &out)
        if let timestamp = sample.timestampMs {
            out.append(0x20)
            out.append(contentsOf: String(timestamp).utf8)
        }
        out.append(0x0A)
    }

    /// `{a="1",b="2"}`, nothing when there are no labels.
    public static func writeLabels(_ labels: [Label], into out: inout [UInt8]) {
        guard !labels.isEmpty else { return }
        out.append(UInt8(ascii: "{"))
        for (index, label) in labels.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            appendUTF8(label.name, to: &out)
            out.append(contentsOf: "=\"".utf8)
            writeEscapedValue(label.value, into: &out)
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
    }

    public static func writeEscapedValue(_ value: String, into out: inout [UInt8]) {
        var value = value
        let plain = value.withUTF8 { bytes in
            guard !bytes.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") || $0 == 0x0A }) else { return false }
            out.append(contentsOf: bytes)
            return true
        }
        guard !plain else { return }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\n"): out.append(contentsOf: #"\n"#.utf8)
            default: out.append(byte)
            }
        }
    }

    /// Appends a string's bytes in one copy.
    static func appendUTF8(_ text: String, to out: inout [UInt8]) {
        var text = text
        text.withUTF8 { out.append(contentsOf: $0) }
    }

    private static func writeDigits(_ number: UInt64, into out: inout [UInt8]) {
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { buffer in
            var n = number, index = buffer.count
            repeat {
                index -= 1
                buffer[index] = UInt8(ascii: "0") + UInt8(n % 10)
                n /= 10
            } while n > 0
            out.append(contentsOf: buffer[index...])
        }
    }

    /// Integers without a fraction, `NaN`, `+Inf`, `-Inf`, otherwise the shortest exact decimal.
    public static func writeValue(_ value: Double, into out: inout [UInt8]) {
        if value.isNaN {
            out.append(contentsOf: "NaN".utf8)
        } else if value.isInfinite {
            out.append(contentsOf: (value > 0 ? "+Inf" : "-Inf").utf8)
        } else if value == value.rounded(), abs(value) < 1e15 {
            if value.sign == .minus { out.append(UInt8(ascii: "-")) }
            writeDigits(UInt64(abs(value)), into: &out)
        } else {
            out.append(contentsOf: value.description.utf8)
        }
    }
}
