#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import TrellisCore

/// One JSON line per request on stdout, buffered on the data-plane loop and written in batches.
final class AccessLog {
    struct Entry {
        var direction: String
        var upstream: String
        var route: String
        var method: String
        var path: String
        var status: Int
        var durationSeconds: Double
        var attempts: Int
        var upstreamHost: String?
        var bytesSent: Int
        var client: String
        /// The caller a gateway verified (a token's subject, an API key's name).
        var clientID: String?
        var trace: TraceContext?
        /// Why the sidecar answered itself (`no_healthy_upstream`, `rate_limited`, …), or nil.
        var localReason: String?
        /// The caller's verified SPIFFE ID, for requests that came over mutual TLS.
        var peerIdentity: String?
    }

    private let service: String
    /// Known once the public port is bound.
    var instance = "-"
    let isEnabled: Bool
    private let sink: OutputSink
    private var buffer: [UInt8] = []
    private var second: Int = -1
    private var secondText: [UInt8] = []

    init(service: String, enabled: Bool, sink: OutputSink) {
        self.sink = sink
        self.service = service
        self.isEnabled = enabled
        buffer.reserveCapacity(64 * 1024)
    }

    func record(_ e: Entry) {
        buffer.append(contentsOf: #"{"ts":""#.utf8)
        appendTimestamp()
        field("level", "info")
        field("msg", "access")
        field("service", service)
        field("instance", instance)
        field("direction", e.direction)
        field("upstream", e.upstream)
        field("route", e.route)
        field("method", e.method)
        field("path", e.path)
        number("status", e.status)
        buffer.append(contentsOf: #","duration_ms":"#.utf8)
        buffer.append(contentsOf: String(Double(Int(e.durationSeconds * 1_000_000)) / 1000).utf8)
        number("attempts", e.attempts)
        if let host = e.upstreamHost { field("upstream_host", host) }
        number("bytes_sent", e.bytesSent)
        field("client", e.client)
        if let id = e.clientID { field("client_id", id) }
        if let identity = e.peerIdentity { field("peer_identity", identity) }
        if let trace = e.trace {
            field("trace_id", trace.traceID)
            field("span_id", trace.spanID)
            if let parent = trace.parentSpanID { field("parent_span_id", parent) }
            field("request_id", trace.requestID)
        }
        if let reason = e.localReason { field("local_reason", reason) }
        buffer.append(contentsOf: "}\n".utf8)
        if buffer.count >= 60 * 1024 { flush() }
    }

    /// Writes what is buffered; called by a timer and when the buffer fills.
    func flush() {
        guard !buffer.isEmpty else { return }
        sink.write(buffer)
        buffer.removeAll(keepingCapacity: true)
    }

    private func field(_ name: String, _ value: String) {
        buffer.append(contentsOf: ",\"\(name)\":".utf8)
        JSON.writeString(value, into: &buffer)
    }

    private func number(_ name: String, _ value: Int) {
        buffer.append(contentsOf: ",\"\(name)\":\(value)".utf8)
    }

    /// RFC 3339 UTC with milliseconds; the part up to the second is formatted once per second.
    private func appendTimestamp() {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let seconds = Int(now.tv_sec)
        if seconds != second {
            second = seconds
            var t = time_t(seconds)
            var parts = tm()
            gmtime_r(&t, &parts)
            secondText = Array(String(rfc3339Second: parts).utf8)
        }
        buffer.append(contentsOf: secondText)
        let millis = Int(now.tv_nsec) / 1_000_000
        buffer.append(UInt8(ascii: "."))
        buffer.append(UInt8(ascii: "0") + UInt8(millis / 100))
        buffer.append(UInt8(ascii: "0") + UInt8(millis / 10 % 10))
        buffer.append(UInt8(ascii: "0") + UInt8(millis % 10))
        buffer.append(contentsOf: "Z\"".utf8)
    }
}

private extension String {
    init(rfc3339Second t: tm) {
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        self = "\(t.tm_year + 1900)-\(two(t.tm_mon + 1))-\(two(t.tm_mday))T\(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec))"
    }
}
