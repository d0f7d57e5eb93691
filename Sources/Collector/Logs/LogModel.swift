import Telemetry

/// One log line as Loki stores it.
public struct LogEntry: Sendable, Equatable {
    public var timestampNs: Int64
    public var line: String
    /// Loki's structured metadata: per-line key/values that are not stream labels (e.g. `trace_id`).
    public var metadata: [Label]

    public init(timestampNs: Int64, line: String, metadata: [Label] = []) {
        self.timestampNs = timestampNs
        self.line = line
        self.metadata = metadata
    }
}

/// Lines that share one label set, in order.
public struct LogStream: Sendable, Equatable {
    /// Sorted by name, as Loki keys streams.
    public var labels: [Label]
    public var entries: [LogEntry]

    public init(labels: [Label], entries: [LogEntry] = []) {
        self.labels = labels.sorted { $0.name < $1.name }
        self.entries = entries
    }

    /// `{a="1", b="2"}`, the form of Loki's protobuf `labels` field and of its error messages.
    public var labelString: String { LogStream.format(labels) }

    public static func format(_ labels: [Label]) -> String {
        var out: [UInt8] = [UInt8(ascii: "{")]
        for (index, label) in labels.enumerated() {
            if index > 0 { out.append(contentsOf: ", ".utf8) }
            out.append(contentsOf: label.name.utf8)
            out.append(contentsOf: "=\"".utf8)
            Exposition.writeEscapedValue(label.value, into: &out)
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses `{a="1", b="2"}`; only equality matchers are labels.
    public static func parseLabels(_ text: String) throws(SelectorError) -> [Label] {
        let selector = try LabelSelector.parse(text)
        return try selector.matchers.map { matcher throws(SelectorError) in
            guard matcher.op == .equal, matcher.name != "__name__" else {
                throw SelectorError("labels must be written {name=\"value\", …}")
            }
            return Label(matcher.name, matcher.value)
        }
    }
}

/// Groups streams by label set, keeping the order of entries within each.
struct StreamMerger {
    private var index: [[Label]: Int] = [:]
    private(set) var streams: [LogStream] = []

    mutating func add(_ stream: LogStream) {
        streams[slot(for: stream.labels)].entries.append(contentsOf: stream.entries)
    }

    mutating func add(labels: [Label], entry: LogEntry) {
        streams[slot(for: labels)].entries.append(entry)
    }

    private mutating func slot(for labels: [Label]) -> Int {
        if let at = index[labels] { return at }
        index[labels] = streams.count
        streams.append(LogStream(labels: labels))
        return streams.count - 1
    }
}
