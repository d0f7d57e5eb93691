import NIOHTTP1

/// What a proxy changes in headers: hop-by-hop headers stay on their hop (RFC 9110 §7.6.1),
/// forwarding and trace headers are added.
enum HeaderRules {
    private static let hopByHop = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect"]

    static func prepareUpstreamRequest(_ headers: inout HTTPHeaders, client: String, trace: TraceContext) {
        stripHopByHop(&headers)
        if headers.contains(name: "transfer-encoding") { headers.remove(name: "content-length") }
        if let previous = headers.first(name: "x-forwarded-for") {
            headers.replaceOrAdd(name: "x-forwarded-for", value: "\(previous), \(client)")
        } else {
            headers.add(name: "x-forwarded-for", value: client)
        }
        if !headers.contains(name: "x-forwarded-proto") { headers.add(name: "x-forwarded-proto", value: "http") }
        trace.write(into: &headers)
    }

    /// Returns whether the client connection stays open: an HTTP/1.0 client cannot read a
    /// chunked body, so a response without a length is delimited by closing.
    static func prepareDownstreamResponse(_ headers: inout HTTPHeaders, keepAlive wanted: Bool, requestVersion: HTTPVersion) -> Bool {
        stripHopByHop(&headers)
        let keepAlive = wanted && (requestVersion != .http1_0 || headers.contains(name: "content-length"))
        if !keepAlive {
            headers.add(name: "connection", value: "close")
        } else if requestVersion == .http1_0 {
            headers.add(name: "connection", value: "keep-alive")
        }
        return keepAlive
    }

    /// Removes the fixed hop-by-hop headers and those the `Connection` header names, in one pass
    /// over the headers (most messages carry none, or only `Connection`).
    private static func stripHopByHop(_ headers: inout HTTPHeaders) {
        var doomed: [String] = []
        for (name, value) in headers where hopByHop.contains(where: { equalsIgnoringCase(name, $0) }) {
            doomed.append(name)
            guard equalsIgnoringCase(name, "connection") else { continue }
            for token in value.split(separator: ",") {
                let named = token.lowercased().filter { $0 != " " && $0 != "\t" }
                if !["close", "keep-alive", "transfer-encoding", "content-length"].contains(named) { doomed.append(named) }
            }
        }
        for name in doomed { headers.remove(name: name) }
    }

    /// ASCII case-insensitive equality with a lowercase name.
    private static func equalsIgnoringCase(_ name: String, _ lowercase: String) -> Bool {
        name.utf8.count == lowercase.utf8.count
            && zip(name.utf8, lowercase.utf8).allSatisfy { ($0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0) == $1 }
    }
}
