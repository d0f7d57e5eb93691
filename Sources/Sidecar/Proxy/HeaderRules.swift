import NIOCore
import NIOHTTP1
import Policy

/// The heads the proxy writes. Forwarded heads are copied as received, except
/// hop-by-hop headers, which stay on their hop (RFC 9110 §7.6.1); forwarding and trace headers
/// are added to requests.
enum HeaderRules {
    /// What the gateway changes in a forwarded request: the target (a rewrite), the identity
    /// headers (dropped as the client sent them, set to the verified caller's), and
    /// `x-forwarded-proto` (the scheme the client used, whatever it claims).
    struct EdgeForwarding {
        var target: String?
        var identityHeaders: IdentityHeaders
        var identity: EdgeIdentity?
        var scheme: String
    }

    /// The head sent upstream for `request`, always HTTP/1.1 since upstream connections are kept open.
    static func upstreamRequest(_ request: MessageHead, client: String, trace: TraceContext, edge: EdgeForwarding? = nil,
                                allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: request.bytes.readableBytes + 320)
        if let target = edge?.target {
            request.copy(request.first, to: &out)
            out.writeString(" " + target)
        } else {
            request.copy(request.first.lowerBound..<request.second.upperBound, to: &out)
        }
        out.writeStaticString(" HTTP/1.1\r\n")
        var forwardedFor = false
        var forwardedProto = false
        request.copyFields(to: &out) { field in
            switch field.kind {
            case .forwardedFor: forwardedFor = true; return false
            case .forwardedProto:
                if edge != nil { return false }
                forwardedProto = true
                return true
            case .traceparent, .requestID, .b3, .b3Multi: return !trace.replaces(field.kind)
            case .other:
                // A client never speaks for the gateway's verified caller.
                if let headers = edge?.identityHeaders, MessageHead.equalsIgnoringCase(request.bytes, field.name, headers.user)
                    || MessageHead.equalsIgnoringCase(request.bytes, field.name, headers.roles) { return false }
                return !request.isHopByHop(field)
            default: return !request.isHopByHop(field)
            }
        }
        if let edge, let identity = edge.identity {
            writeLine(edge.identityHeaders.user, identity.id, to: &out)
            if !identity.roles.isEmpty { writeLine(edge.identityHeaders.roles, identity.roles.joined(separator: ","), to: &out) }
        }
        out.writeStaticString("x-forwarded-for: ")
        if forwardedFor {
            for field in request.fields where field.kind == .forwardedFor {
                request.copy(field.value, to: &out)
                out.writeStaticString(", ")
            }
        }
        // The rest in one block of reserved bytes.
        ASCIIWriter.append(to: &out, maximum: client.utf8.count + 32 + trace.maximumLength) { out in
            out.write(client)
            out.write("\r\n")
            if !forwardedProto { out.write(edge?.scheme == "https" ? "x-forwarded-proto: https\r\n" : "x-forwarded-proto: http\r\n") }
            trace.write(to: &out)
            out.write("\r\n")
        }
        return out
    }

    /// Whether the client's connection stays open after `response`: not when the client or the
    /// sidecar asked to close, nor when the body ends with the connection (no length; or chunked,
    /// which an HTTP/1.0 client cannot read).
    static func keepsClientOpen(_ wanted: Bool, clientMinorVersion: Int, response: MessageHead) -> Bool {
        switch response.body {
        case .none, .length: wanted
        case .chunked: wanted && clientMinorVersion == 1
        case .untilClose: false
        }
    }

    /// The head sent to the client for `response`, in the client's HTTP version. `dechunk`: the
    /// body goes out without chunked framing; `extra`: header lines to add.
    static func downstreamResponse(_ response: MessageHead, clientMinorVersion: Int, keepAlive: Bool, dechunk: Bool,
                                   extra: ByteBuffer?, allocator: ByteBufferAllocator) -> ByteBuffer {
        var out = allocator.buffer(capacity: response.bytes.readableBytes + 64)
        out.writeStaticString(clientMinorVersion == 0 ? "HTTP/1.0 " : "HTTP/1.1 ")
        response.copy(response.first.lowerBound..<response.second.upperBound, to: &out)
        out.writeStaticString("\r\n")
        let transferEncoding = response.fields.contains { $0.kind == .transferEncoding }
        response.copyFields(to: &out) { field in
            switch field.kind {
            case .transferEncoding: !dechunk
            case .contentLength: !transferEncoding
            default: !response.isHopByHop(field)
            }
        }
        connectionHeader(keepAlive: keepAlive, clientMinorVersion: clientMinorVersion, to: &out)
        if var extra { out.writeBuffer(&extra) }
        out.writeStaticString("\r\n")
        return out
    }

    /// A whole response made by the sidecar itself: a plain-text `message` (or a JSON body; no body
    /// for HEAD, nor at all for 204) and `x-trellis-error: reason`.
    static func localResponse(_ status: HTTPResponseStatus, reason: String, message: String, json: String? = nil, clientMinorVersion: Int,
                              keepAlive: Bool, withBody: Bool, extra: ByteBuffer?, allocator: ByteBufferAllocator) -> ByteBuffer {
        let body = status == .noContent ? nil : (json ?? message) + "\n"
        var out = allocator.buffer(capacity: 256 + (body?.utf8.count ?? 0))
        out.writeString("HTTP/1.\(clientMinorVersion) \(status.code) \(status.reasonPhrase)\r\n")
        if let body {
            out.writeString(json == nil ? "content-type: text/plain; charset=utf-8\r\n" : "content-type: application/json\r\n")
            out.writeString("content-length: \(body.utf8.count)\r\n")
        }
        if status != .noContent { writeLine("x-trellis-error", reason, to: &out) }
        connectionHeader(keepAlive: keepAlive, clientMinorVersion: clientMinorVersion, to: &out)
        if var extra { out.writeBuffer(&extra) }
        out.writeStaticString("\r\n")
        if withBody, let body { out.writeString(body) }
        return out
    }

    /// Header lines of `pairs`, nil when there are none.
    static func lines(_ pairs: [(String, String)], allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard !pairs.isEmpty else { return nil }
        var out = allocator.buffer(capacity: 64 * pairs.count)
        for (name, value) in pairs { writeLine(name, value, to: &out) }
        return out
    }

    /// One header line, `name: value`.
    static func writeLine(_ name: String, _ value: String, to out: inout ByteBuffer) {
        out.writeString(name)
        out.writeStaticString(": ")
        out.writeString(value)
        out.writeStaticString("\r\n")
    }

    private static func connectionHeader(keepAlive: Bool, clientMinorVersion: Int, to out: inout ByteBuffer) {
        if !keepAlive {
            out.writeStaticString("connection: close\r\n")
        } else if clientMinorVersion == 0 {
            out.writeStaticString("connection: keep-alive\r\n")
        }
    }
}
