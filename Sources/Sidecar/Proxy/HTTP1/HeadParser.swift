#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import NIOCore

/// Reads HTTP/1.x heads from received bytes (RFC 9112), strictly enough that the sidecar and the
/// programs on either side cannot disagree on where a message ends: CRLF line ends, no whitespace
/// before a field's colon, no folded lines or control characters, one Content-Length, and no
/// request with both Content-Length and Transfer-Encoding.
enum HeadParser {
    static let maxHeadBytes = 64 * 1024
    static let maxFields = 256

    enum Outcome {
        case incomplete
        case complete(MessageHead)
        /// To be refused with this status (400, 431, 505) and reason; the stream cannot go on.
        case invalid(status: Int, reason: String)
    }

    /// Takes a request head from the front of `buffer` once it is complete; empty lines before it
    /// are skipped (RFC 9112 §2.2).
    static func request(from buffer: inout ByteBuffer) -> Outcome {
        take(from: &buffer, request: true, toHEAD: false)
    }

    /// Takes a response head; `toHEAD` says the request was HEAD, so no body follows.
    static func response(from buffer: inout ByteBuffer, toHEAD: Bool) -> Outcome {
        take(from: &buffer, request: false, toHEAD: toHEAD)
    }

    private static let cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n"), sp = UInt8(ascii: " "), ht = UInt8(ascii: "\t")

    private static func take(from buffer: inout ByteBuffer, request: Bool, toHEAD: Bool) -> Outcome {
        var skip = 0
        var length = 0
        let found: Outcome? = buffer.withUnsafeReadableBytes { raw in
            if request {
                while skip + 1 < raw.count && raw[skip] == cr && raw[skip + 1] == lf { skip += 2 }
            }
            let limit = min(raw.count, skip + maxHeadBytes)
            guard let base = raw.baseAddress else { return .incomplete }
            var lineStart = skip
            while lineStart < limit, let found = memchr(base + lineStart, Int32(lf), limit - lineStart) {
                let i = base.distance(to: UnsafeRawPointer(found))
                guard i > lineStart, raw[i - 1] == cr else { return .invalid(status: 400, reason: "lines must end with CRLF") }
                if i - 1 == lineStart {
                    guard lineStart > skip else { return .invalid(status: 400, reason: "empty start line") }
                    length = i + 1 - skip
                    return nil
                }
                lineStart = i + 1
            }
            return raw.count - skip >= maxHeadBytes
                ? .invalid(status: 431, reason: "head larger than \(maxHeadBytes / 1024) KiB") : .incomplete
        }
        // Empty lines are dropped at once, so that a stream of them cannot pile up.
        buffer.moveReaderIndex(forwardBy: skip)
        if let found { return found }
        let head = buffer.getSlice(at: buffer.readerIndex, length: length)!
        let outcome = parse(head, request: request, toHEAD: toHEAD)
        if case .complete = outcome { buffer.moveReaderIndex(forwardBy: length) }
        return outcome
    }

    private static func parse(_ head: ByteBuffer, request: Bool, toHEAD: Bool) -> Outcome {
        head.withUnsafeReadableBytes { raw -> Outcome in
            func invalid(_ reason: String, _ status: Int = 400) -> Outcome { .invalid(status: status, reason: reason) }
            var lineEnd = 0
            while raw[lineEnd] != cr { lineEnd += 1 }
            guard raw[lineEnd + 1] == lf else { return invalid("bare CR in the start line") }

            // Start line.
            let first: Range<Int>, second: Range<Int>, minor: Int
            var status = 0
            if request {
                var p = 0
                while p < lineEnd && isTokenByte(raw[p]) { p += 1 }
                guard p > 0, p < lineEnd, raw[p] == sp else { return invalid("invalid method") }
                var q = p + 1
                while q < lineEnd && raw[q] > 0x20 && raw[q] != 0x7F { q += 1 }
                guard q > p + 1, q < lineEnd, raw[q] == sp else { return invalid("invalid request target") }
                guard let version = httpVersion(raw, q + 1, lineEnd) else { return invalid("not an HTTP/1.x request line") }
                guard version >= 0 else { return invalid("HTTP version not supported", 505) }
                (first, second, minor) = (0..<p, (p + 1)..<q, version)
            } else {
                guard lineEnd >= 12, let version = httpVersion(raw, 0, 8), version >= 0, raw[8] == sp,
                      (9..<12).allSatisfy({ raw[$0] >= 0x30 && raw[$0] <= 0x39 }),
                      lineEnd == 12 || raw[12] == sp else { return invalid("invalid status line") }
                status = (9..<12).reduce(0) { $0 * 10 + Int(raw[$1] - 0x30) }
                let reason = min(13, lineEnd)..<lineEnd
                guard raw[reason].allSatisfy(isFieldByte) else { return invalid("invalid reason phrase") }
                (first, second, minor) = (9..<12, reason, version)
            }

            // Fields.
            var fields: [HeaderField] = []
            fields.reserveCapacity(8)
            var contentLength: Int?
            var transferEncoding = false
            var chunkedLast = false
            var close = false
            var keepAliveToken = false
            var connectionNamed: [String] = []
            var lineStart = lineEnd + 2
            while raw[lineStart] != cr {
                lineEnd = lineStart
                while raw[lineEnd] != cr { lineEnd += 1 }
                guard raw[lineEnd + 1] == lf else { return invalid("bare CR in a header field") }
                guard fields.count < maxFields else { return invalid("more than \(maxFields) header fields", 431) }
                guard raw[lineStart] != sp && raw[lineStart] != ht else { return invalid("folded header line") }
                var colon = lineStart
                while colon < lineEnd && isTokenByte(raw[colon]) { colon += 1 }
                guard colon > lineStart, colon < lineEnd, raw[colon] == UInt8(ascii: ":") else { return invalid("invalid header field name") }
                var valueStart = colon + 1
                while valueStart < lineEnd && (raw[valueStart] == sp || raw[valueStart] == ht) { valueStart += 1 }
                var valueEnd = lineEnd
                while valueEnd > valueStart && (raw[valueEnd - 1] == sp || raw[valueEnd - 1] == ht) { valueEnd -= 1 }
                guard raw[valueStart..<valueEnd].allSatisfy(isFieldByte) else { return invalid("control character in a header field") }
                let field = HeaderField(name: lineStart..<colon, value: valueStart..<valueEnd, kind: kind(raw, lineStart..<colon))
                fields.append(field)
                lineStart = lineEnd + 2

                switch field.kind {
                case .contentLength:
                    guard let value = decimal(raw, field.value) else { return invalid("invalid Content-Length") }
                    guard contentLength == nil || contentLength == value else { return invalid("conflicting Content-Length values") }
                    contentLength = value
                case .transferEncoding:
                    transferEncoding = true
                    for token in tokens(raw, field.value) {
                        chunkedLast = equalsIgnoringCase(raw, token, "chunked")
                    }
                case .connection:
                    for token in tokens(raw, field.value) {
                        if equalsIgnoringCase(raw, token, "close") {
                            close = true
                        } else if equalsIgnoringCase(raw, token, "keep-alive") {
                            keepAliveToken = true
                        } else if !["upgrade", "te", "transfer-encoding", "content-length"].contains(where: { equalsIgnoringCase(raw, token, $0) }) {
                            connectionNamed.append(String(decoding: raw[token].map(MessageHead.lower), as: UTF8.self))
                        }
                    }
                default:
                    break
                }
            }

            // Framing (RFC 9112 §6.3).
            let body: BodyLength
            if request {
                if transferEncoding {
                    guard minor == 1 else { return invalid("Transfer-Encoding in an HTTP/1.0 request") }
                    guard contentLength == nil else { return invalid("both Content-Length and Transfer-Encoding") }
                    guard chunkedLast else { return invalid("Transfer-Encoding does not end with chunked") }
                    body = .chunked
                } else {
                    body = (contentLength ?? 0) > 0 ? .length(contentLength!) : .none
                }
            } else if toHEAD || status < 200 || status == 204 || status == 304 {
                body = .none
            } else if transferEncoding {
                body = chunkedLast ? .chunked : .untilClose
            } else if let contentLength {
                body = contentLength > 0 ? .length(contentLength) : .none
            } else {
                body = .untilClose
            }
            let keepAlive = !close && (minor == 1 || keepAliveToken) && body != .untilClose
            return .complete(MessageHead(bytes: head, fields: fields, minorVersion: minor, first: first, second: second,
                                         status: status, body: body, keepAlive: keepAlive, connectionNamed: connectionNamed))
        }
    }

    /// 0 or 1 for `HTTP/1.0` / `HTTP/1.1` in `start..<end`, -1 for another `HTTP/d.d`, nil otherwise.
    private static func httpVersion(_ raw: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Int? {
        guard end - start == 8, raw[start] == UInt8(ascii: "H"), raw[start + 1] == UInt8(ascii: "T"), raw[start + 2] == UInt8(ascii: "T"),
              raw[start + 3] == UInt8(ascii: "P"), raw[start + 4] == UInt8(ascii: "/"), raw[start + 6] == UInt8(ascii: "."),
              (0x30...0x39).contains(raw[start + 5]), (0x30...0x39).contains(raw[start + 7]) else { return nil }
        guard raw[start + 5] == UInt8(ascii: "1"), raw[start + 7] <= UInt8(ascii: "1") else { return -1 }
        return Int(raw[start + 7] - 0x30)
    }

    /// A non-negative decimal of at most 18 digits.
    private static func decimal(_ raw: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
        guard !range.isEmpty, range.count <= 18 else { return nil }
        var value = 0
        for byte in raw[range] {
            guard byte >= 0x30 && byte <= 0x39 else { return nil }
            value = value * 10 + Int(byte - 0x30)
        }
        return value
    }

    /// The comma-separated elements of a field value, without surrounding whitespace.
    private static func tokens(_ raw: UnsafeRawBufferPointer, _ range: Range<Int>) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var start = range.lowerBound
        for i in range.lowerBound...range.upperBound where i == range.upperBound || raw[i] == UInt8(ascii: ",") {
            var (s, e) = (start, i)
            while s < e && (raw[s] == sp || raw[s] == ht) { s += 1 }
            while e > s && (raw[e - 1] == sp || raw[e - 1] == ht) { e -= 1 }
            if s < e { result.append(s..<e) }
            start = i + 1
        }
        return result
    }

    /// ASCII case-insensitive comparison of the bytes in `range` with `name`.
    static func equalsIgnoringCase(_ raw: UnsafeRawBufferPointer, _ range: Range<Int>, _ name: String) -> Bool {
        equalsIgnoringCase(raw, range, name.utf8)
    }

    static func equalsIgnoringCase(_ raw: UnsafeRawBufferPointer, _ range: Range<Int>, _ name: some Collection<UInt8>) -> Bool {
        range.count == name.count && zip(raw[range], name).allSatisfy { MessageHead.lower($0) == MessageHead.lower($1) }
    }

    /// Names the proxy treats specially (as bytes), indexed by length.
    private static let kinds: [[(name: [UInt8], kind: FieldKind)]] = {
        let list: [(String, FieldKind)] = [
            ("content-length", .contentLength), ("transfer-encoding", .transferEncoding), ("connection", .connection),
            ("expect", .expect), ("keep-alive", .hopByHop), ("proxy-connection", .hopByHop), ("te", .hopByHop),
            ("trailer", .hopByHop), ("upgrade", .hopByHop), ("x-forwarded-for", .forwardedFor),
            ("x-forwarded-proto", .forwardedProto), ("x-request-id", .requestID), ("traceparent", .traceparent),
            ("b3", .b3), ("x-b3-traceid", .b3Multi), ("x-b3-spanid", .b3Multi), ("x-b3-parentspanid", .b3Multi),
            ("x-b3-sampled", .b3Multi),
        ]
        var byLength = [[(name: [UInt8], kind: FieldKind)]](repeating: [], count: 18)
        for (name, kind) in list { byLength[name.utf8.count].append((Array(name.utf8), kind)) }
        return byLength
    }()

    /// Most names are none of these: a different first letter rules a candidate out at once.
    private static func kind(_ raw: UnsafeRawBufferPointer, _ name: Range<Int>) -> FieldKind {
        guard name.count < kinds.count else { return .other }
        let first = MessageHead.lower(raw[name.lowerBound])
        for candidate in kinds[name.count] where candidate.name[0] == first && equalsIgnoringCase(raw, name, candidate.name) {
            return candidate.kind
        }
        return .other
    }

    /// RFC 9110 `tchar`: bit `b` of the mask (bytes 0–63, then 64–127) is set for each token byte.
    @inline(__always) private static func isTokenByte(_ byte: UInt8) -> Bool {
        byte < 64 ? (0x03FF_6CFA_0000_0000 as UInt64) >> byte & 1 == 1
            : byte < 128 && (0x57FF_FFFF_C7FF_FFFE as UInt64) >> (byte - 64) & 1 == 1
    }

    /// Field values and reason phrases: HTAB, SP, visible ASCII and obs-text.
    @inline(__always) private static func isFieldByte(_ byte: UInt8) -> Bool {
        byte == 0x09 || (byte >= 0x20 && byte != 0x7F)
    }
}
