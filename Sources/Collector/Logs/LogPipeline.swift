import Telemetry
import TrellisCore

/// What the collector does to every accepted line: reads JSON or logfmt fields, lifts a few of
/// them to stream labels, keeps others as structured metadata, and drops or samples by rule.
public struct LogPipeline: Sendable {
    public struct Rule: Sendable {
        public enum Action: Sendable, Equatable {
            case drop
            /// Keeps this fraction of the matching lines (0…1).
            case sample(Double)
        }

        public var selector: LabelSelector?
        public var lineContains: String?
        public var action: Action

        public init(selector: LabelSelector? = nil, lineContains: String? = nil, action: Action) {
            self.selector = selector
            self.lineContains = lineContains
            self.action = action
        }

        func matches(labels: [Label], line: String) -> Bool {
            (selector?.matches(labels) ?? true) && (lineContains.map { line.contains($0) } ?? true)
        }
    }

    /// Fields that become labels when the stream lacks them (low-cardinality ones only).
    public var labelFields = ["level", "service", "instance"]
    /// Fields kept as structured metadata.
    public var metadataFields = ["trace_id"]
    public var rules: [Rule] = []

    public init() {}

    public struct Result: Sendable {
        public var streams: [LogStream] = []
        public var dropped = 0
    }

    public func process(_ streams: [LogStream]) -> Result {
        var merger = StreamMerger()
        var result = Result()
        var sampler = FastSampler()
        let wanted = Set(labelFields + metadataFields)
        for stream in streams {
            for entry in stream.entries {
                let fields = LineFields.parse(entry.line, wanted: wanted)
                var labels = stream.labels
                for name in labelFields {
                    guard let value = fields[name], !value.isEmpty, !labels.contains(where: { $0.name == name }) else { continue }
                    labels.append(Label(name, name == "level" ? value.lowercased() : value))
                }
                if labels.count != stream.labels.count { labels.sort { $0.name < $1.name } }
                if let rule = rules.first(where: { $0.matches(labels: labels, line: entry.line) }) {
                    switch rule.action {
                    case .drop:
                        result.dropped += 1
                        continue
                    case .sample(let rate):
                        if !sampler.keep(rate) {
                            result.dropped += 1
                            continue
                        }
                    }
                }
                var kept = entry
                for name in metadataFields {
                    guard let value = fields[name], !value.isEmpty, !kept.metadata.contains(where: { $0.name == name }) else { continue }
                    kept.metadata.append(Label(name, value))
                }
                merger.add(labels: labels, entry: kept)
            }
        }
        result.streams = merger.streams
        return result
    }
}

/// The fields of a JSON-object or logfmt line that the pipeline asked for.
enum LineFields {
    static func parse(_ line: String, wanted: Set<String>) -> [String: String] {
        let trimmed = line.utf8.drop { $0 == 0x20 || $0 == 0x09 }
        if trimmed.first == UInt8(ascii: "{") {
            guard let object = (try? JSON.parse(trimmed))?.objectValue else { return [:] }
            var fields: [String: String] = [:]
            for name in wanted {
                switch object[exact: name] {
                case .string(let text): fields[name] = text
                case .int(let number): fields[name] = String(number)
                case .bool(let flag): fields[name] = String(flag)
                default: break
                }
            }
            return fields
        }
        return logfmt(line, wanted: wanted)
    }

    /// `key=value key="quoted value"`: the wanted keys only.
    static func logfmt(_ line: String, wanted: Set<String>) -> [String: String] {
        var fields: [String: String] = [:]
        let bytes = Array(line.utf8)
        var i = 0
        while i < bytes.count {
            while i < bytes.count && bytes[i] == 0x20 { i += 1 }
            let keyStart = i
            while i < bytes.count && bytes[i] != UInt8(ascii: "=") && bytes[i] != 0x20 { i += 1 }
            let key = String(decoding: bytes[keyStart..<i], as: UTF8.self)
            guard i < bytes.count, bytes[i] == UInt8(ascii: "=") else { continue }
            i += 1
            var value: [UInt8] = []
            if i < bytes.count && bytes[i] == UInt8(ascii: "\"") {
                i += 1
                while i < bytes.count && bytes[i] != UInt8(ascii: "\"") {
                    if bytes[i] == UInt8(ascii: "\\") && i + 1 < bytes.count { i += 1 }
                    value.append(bytes[i])
                    i += 1
                }
                i += 1
            } else {
                while i < bytes.count && bytes[i] != 0x20 {
                    value.append(bytes[i])
                    i += 1
                }
            }
            if wanted.contains(key) { fields[key] = String(decoding: value, as: UTF8.self) }
        }
        return fields
    }
}

/// xorshift: sampling needs speed, not cryptographic randomness.
private struct FastSampler {
    private var state: UInt64 = UInt64.random(in: 1...UInt64.max)

    mutating func keep(_ rate: Double) -> Bool {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return Double(state >> 11) / Double(1 << 53) < rate
    }
}
