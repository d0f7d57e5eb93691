import Foundation
import Telemetry
import TrellisCore

/// Answers Loki's `GET /loki/api/v1/query_range` from the lines the disk buffer still holds.
public struct LogQueryService: Sendable {
    public struct BadRequest: Error, CustomStringConvertible {
        public var description: String
    }

    let buffer: LogBuffer

    public init(buffer: LogBuffer) { self.buffer = buffer }

    public struct Request: Sendable {
        public var query: LogQuery
        public var startNs: Int64
        public var endNs: Int64
        public var limit: Int
        public var forward: Bool
    }

    /// Reads Loki's parameters: `query`, `start`/`end` (ns, seconds or RFC 3339), `since`, `limit`, `direction`.
    public static func request(_ parameter: (String) -> String?, now: Date = Date()) throws(BadRequest) -> Request {
        guard let text = parameter("query"), !text.isEmpty else { throw BadRequest(description: "query parameter is required") }
        let query: LogQuery
        do { query = try LogQuery.parse(text) } catch { throw BadRequest(description: "parse error: \(error)") }
        let nowNs = Int64(now.timeIntervalSince1970 * 1e9)
        let endNs = try parameter("end").map { value throws(BadRequest) in try time(value, "end") } ?? nowNs
        var startNs = endNs - 3600 * 1_000_000_000
        if let since = parameter("since") {
            guard let ns = GoDuration.parseNanoseconds(since) else { throw BadRequest(description: "invalid since: \(since)") }
            startNs = endNs - ns
        }
        if let start = parameter("start") { startNs = try time(start, "start") }
        guard endNs >= startNs else { throw BadRequest(description: "end timestamp must not be before or equal to start time") }
        var limit = 100
        if let text = parameter("limit") {
            guard let value = Int(text), value > 0 else { throw BadRequest(description: "limit must be a positive integer") }
            limit = value
        }
        let direction = parameter("direction") ?? "backward"
        guard direction == "forward" || direction == "backward" else {
            throw BadRequest(description: "invalid direction \"\(direction)\": forward or backward")
        }
        return Request(query: query, startNs: startNs, endNs: endNs, limit: limit, forward: direction == "forward")
    }

    /// As Loki reads them: an integer of up to 10 digits is seconds, a longer one nanoseconds;
    /// a decimal is seconds; otherwise RFC 3339.
    static func time(_ text: String, _ name: String) throws(BadRequest) -> Int64 {
        if let ns = Int64(text) { return text.count <= 10 ? ns * 1_000_000_000 : ns }
        if let seconds = Double(text) { return Int64(seconds * 1e9) }
        if let date = try? Date(text, strategy: .iso8601) { return Int64(date.timeIntervalSince1970 * 1e9) }
        throw BadRequest(description: "invalid \(name) time \"\(text)\"")
    }

    /// Loki's streams result: one stream per label set (stream labels plus structured metadata).
    public func run(_ request: Request) throws -> [UInt8] {
        var matches: [(labels: [Label], entry: LogEntry)] = []
        try buffer.scan(from: buffer.start) { payload in
            for stream in try PushCodec.decodeProtobuf(payload) where request.query.selector.matches(stream.labels) {
                for entry in stream.entries where entry.timestampNs >= request.startNs && entry.timestampNs <= request.endNs
                    && request.query.accepts(line: entry.line) {
                    matches.append((stream.labels, entry))
                }
            }
        }
        // Stable: lines with the same timestamp keep their arrival order.
        let ordered = matches.enumerated().sorted {
            ($0.element.entry.timestampNs, $0.offset) < ($1.element.entry.timestampNs, $1.offset)
        }.map(\.element)
        let selected = request.forward ? Array(ordered.prefix(request.limit)) : Array(ordered.suffix(request.limit).reversed())
        var merger = StreamMerger()
        for (labels, entry) in selected {
            let all = entry.metadata.isEmpty ? labels : (labels + entry.metadata).sorted { $0.name < $1.name }
            merger.add(labels: all, entry: LogEntry(timestampNs: entry.timestampNs, line: entry.line))
        }
        var out: [UInt8] = []
        out.append(contentsOf: #"{"status":"success","data":{"resultType":"streams","result":"#.utf8)
        PushCodec.writeStreams(merger.streams, into: &out)
        out.append(contentsOf: #","stats":{"summary":{"totalEntriesReturned":"#.utf8)
        out.append(contentsOf: "\(selected.count)}}}}".utf8)
        return out
    }
}
