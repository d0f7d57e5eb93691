import Telemetry
import TrellisCore

/// Loki's push bodies: `logproto.PushRequest` protobuf (snappy-compressed on the wire) and JSON.
public enum PushCodec {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    // MARK: protobuf

    /// PushRequest { repeated StreamAdapter streams = 1; }
    /// StreamAdapter { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
    /// EntryAdapter { Timestamp timestamp = 1; string line = 2; repeated LabelPairAdapter structuredMetadata = 3; }
    public static func encodeProtobuf(_ streams: [LogStream]) -> [UInt8] {
        var writer = ProtoWriter()
        for stream in streams {
            writer.messageField(1) { s in
                s.stringField(1, stream.labelString)
                for entry in stream.entries {
                    s.messageField(2) { e in
                        e.messageField(1) { t in
                            let (seconds, nanos) = entry.timestampNs.quotientAndRemainder(dividingBy: 1_000_000_000)
                            let (s, n) = nanos < 0 ? (seconds - 1, nanos + 1_000_000_000) : (seconds, nanos)
                            t.varintField(1, UInt64(bitPattern: s))
                            t.varintField(2, UInt64(n))
                        }
                        e.stringField(2, entry.line)
                        for pair in entry.metadata {
                            e.messageField(3) { p in
                                p.stringField(1, pair.name)
                                p.stringField(2, pair.value)
                            }
                        }
                    }
                }
            }
        }
        return writer.bytes
    }

    public static func decodeProtobuf(_ bytes: [UInt8]) throws(Failure) -> [LogStream] {
        do {
            var streams: [LogStream] = []
            var request = ProtoReader(bytes[...])
            while !request.atEnd {
                let (number, wireType) = try request.field()
                guard number == 1, wireType == 2 else { try request.skip(wireType: wireType); continue }
                streams.append(try decodeStream(try request.lengthDelimited()))
            }
            return streams
        } catch let error as ProtoReader.Failure {
            throw Failure(description: "invalid protobuf PushRequest: \(error)")
        } catch let error as SelectorError {
            throw Failure(description: "\(error)")
        } catch {
            throw Failure(description: "\(error)")
        }
    }

    private static func decodeStream(_ bytes: ArraySlice<UInt8>) throws -> LogStream {
        var reader = ProtoReader(bytes)
        var labelText = ""
        var entries: [LogEntry] = []
        while !reader.atEnd {
            let (number, wireType) = try reader.field()
            switch (number, wireType) {
            case (1, 2): labelText = try reader.string()
            case (2, 2): entries.append(try decodeEntry(try reader.lengthDelimited()))
            default: try reader.skip(wireType: wireType)
            }
        }
        let labels: [Label]
        do { labels = try LogStream.parseLabels(labelText) } catch {
            throw InvalidLabels(text: labelText, reason: error.description)
        }
        return LogStream(labels: labels, entries: entries)
    }

    private static func decodeEntry(_ bytes: ArraySlice<UInt8>) throws(ProtoReader.Failure) -> LogEntry {
        var reader = ProtoReader(bytes)
        var entry = LogEntry(timestampNs: 0, line: "")
        while !reader.atEnd {
            let (number, wireType) = try reader.field()
            switch (number, wireType) {
            case (1, 2):
                var timestamp = ProtoReader(try reader.lengthDelimited())
                var seconds: Int64 = 0, nanos: Int64 = 0
                while !timestamp.atEnd {
                    let (field, type) = try timestamp.field()
                    switch (field, type) {
                    case (1, 0): seconds = Int64(bitPattern: try timestamp.varint())
                    case (2, 0): nanos = Int64(Int32(truncatingIfNeeded: try timestamp.varint()))
                    default: try timestamp.skip(wireType: type)
                    }
                }
                let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
                entry.timestampNs = overflow ? (seconds < 0 ? .min : .max) : product &+ nanos
            case (2, 2):
                entry.line = try reader.string()
            case (3, 2):
                var pair = ProtoReader(try reader.lengthDelimited())
                var label = Label("", "")
                while !pair.atEnd {
                    let (field, type) = try pair.field()
                    switch (field, type) {
                    case (1, 2): label.name = try pair.string()
                    case (2, 2): label.value = try pair.string()
                    default: try pair.skip(wireType: type)
                    }
                }
                entry.metadata.append(label)
            default:
                try reader.skip(wireType: wireType)
            }
        }
        return entry
    }

    // MARK: JSON

    /// `{"streams":[{"stream":{"k":"v"},"values":[["<ns>","line",{"meta":"v"}]]}]}`
    public static func encodeJSON(_ streams: [LogStream]) -> [UInt8] {
        var out: [UInt8] = []
        out.append(contentsOf: #"{"streams":"#.utf8)
        writeStreams(streams, into: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// `[{"stream":{…},"values":[["<ns>","line"(,{metadata})]…]}…]`: push bodies and query results alike.
    static func writeStreams(_ streams: [LogStream], into out: inout [UInt8]) {
        out.append(UInt8(ascii: "["))
        for (index, stream) in streams.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: #"{"stream":"#.utf8)
            writeObject(stream.labels, into: &out)
            out.append(contentsOf: #","values":["#.utf8)
            for (entryIndex, entry) in stream.entries.enumerated() {
                if entryIndex > 0 { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: "[\"\(entry.timestampNs)\",".utf8)
                JSON.writeString(entry.line, into: &out)
                if !entry.metadata.isEmpty {
                    out.append(UInt8(ascii: ","))
                    writeObject(entry.metadata, into: &out)
                }
                out.append(UInt8(ascii: "]"))
            }
            out.append(contentsOf: "]}".utf8)
        }
        out.append(UInt8(ascii: "]"))
    }

    static func writeObject(_ labels: [Label], into out: inout [UInt8]) {
        out.append(UInt8(ascii: "{"))
        for (index, label) in labels.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            JSON.writeString(label.name, into: &out)
            out.append(UInt8(ascii: ":"))
            JSON.writeString(label.value, into: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    public static func decodeJSON(_ bytes: [UInt8]) throws(Failure) -> [LogStream] {
        let document: JSON
        do { document = try JSON.parse(bytes) } catch { throw Failure(description: "\(error)") }
        guard let root = document.objectValue else { throw Failure(description: "push body must be a JSON object with \"streams\"") }
        guard let streamsValue = root[exact: "streams"], !streamsValue.isNull else { return [] }
        guard let streams = streamsValue.arrayValue else { throw Failure(description: "\"streams\" must be an array") }
        return try streams.map { item throws(Failure) in
            guard let object = item.objectValue else { throw Failure(description: "each stream must be an object") }
            let labels = try stringPairs(object[exact: "stream"], what: "\"stream\"")
            var entries: [LogEntry] = []
            for value in object[exact: "values"]?.arrayValue ?? [] {
                guard let tuple = value.arrayValue, tuple.count == 2 || tuple.count == 3 else {
                    throw Failure(description: "each value must be [\"<unix epoch in nanoseconds>\", \"<log line>\"] with optional structured metadata")
                }
                let timestamp: Int64?
                switch tuple[0] {
                case .string(let text): timestamp = Int64(text)
                case .int(let number): timestamp = number
                default: timestamp = nil
                }
                guard let timestamp else { throw Failure(description: "timestamp must be a string of nanoseconds since the epoch, got \(tuple[0].text)") }
                guard let line = tuple[1].stringValue else { throw Failure(description: "log line must be a string, got \(tuple[1].text)") }
                let metadata = tuple.count == 3 ? try stringPairs(tuple[2], what: "structured metadata") : []
                entries.append(LogEntry(timestampNs: timestamp, line: line, metadata: metadata))
            }
            return LogStream(labels: labels, entries: entries)
        }
    }

    private static func stringPairs(_ value: JSON?, what: String) throws(Failure) -> [Label] {
        guard let value, !value.isNull else { return [] }
        guard let object = value.objectValue else { throw Failure(description: "\(what) must be an object of strings") }
        return try object.pairs.map { pair throws(Failure) in
            guard let text = pair.value.stringValue else { throw Failure(description: "\(what) value of \"\(pair.key)\" must be a string") }
            return Label(pair.key, text)
        }
    }
}

/// A protobuf stream whose `labels` text does not parse: Loki's `invalid_labels`.
struct InvalidLabels: Error, CustomStringConvertible {
    var text: String
    var reason: String
    var description: String { "Error parsing labels '\(text)' with error: \(reason)" }
}
