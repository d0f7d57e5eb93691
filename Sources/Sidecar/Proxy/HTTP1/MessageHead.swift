import NIOCore

/// How the body of a message is delimited (RFC 9112 §6.3).
enum BodyLength: Equatable {
    case none
    case length(Int)
    case chunked
    /// A response without a length: its body ends when the connection closes.
    case untilClose
}

/// What a proxy needs to know of a header field, decided once while parsing.
enum FieldKind: UInt8 {
    case other, contentLength, transferEncoding, connection, expect
    /// `keep-alive`, `proxy-connection`, `te`, `trailer`, `upgrade`: they stay on their hop.
    case hopByHop
    case forwardedFor, forwardedProto, requestID, traceparent, b3
    /// `x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`.
    case b3Multi
}

/// One header field: byte ranges of its name and (trimmed) value within the head. Offsets are
/// kept in 32 bits: a field costs 20 bytes instead of 40, and every request in flight holds a list.
struct HeaderField {
    private let nameStart, nameEnd, valueStart, valueEnd: UInt32
    let kind: FieldKind

    init(name: Range<Int>, value: Range<Int>, kind: FieldKind) {
        nameStart = UInt32(name.lowerBound)
        nameEnd = UInt32(name.upperBound)
        valueStart = UInt32(value.lowerBound)
        valueEnd = UInt32(value.upperBound)
        self.kind = kind
    }

    var name: Range<Int> { Int(nameStart)..<Int(nameEnd) }
    var value: Range<Int> { Int(valueStart)..<Int(valueEnd) }
}

/// An HTTP/1.x request or response head, kept as the bytes received plus the positions of its
/// parts, so that forwarding it copies bytes instead of decoding and re-encoding every field.
struct MessageHead {
    /// The head as received, start line to the empty line.
    let bytes: ByteBuffer
    let fields: [HeaderField]
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    let minorVersion: Int
    /// The method (request) or the three status digits (response).
    let first: Range<Int>
    /// The request target (request) or the reason phrase (response).
    let second: Range<Int>
    /// Status code of a response, 0 for a request.
    let status: Int
    let body: BodyLength
    /// Whether the sender lets the connection stay open after this message.
    let keepAlive: Bool
    /// Lowercase names of further headers that `Connection` declares hop-by-hop (usually none).
    let connectionNamed: [String]

    var method: String { string(first) }
    var target: String { string(second) }
    var isHEAD: Bool { bytesEqual(first, "HEAD") }
    var isOPTIONS: Bool { bytesEqual(first, "OPTIONS") }

    /// RFC 9110 idempotent methods: safe to send twice.
    var isIdempotent: Bool {
        ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"].contains { bytesEqual(first, $0) }
    }

    var expectsContinue: Bool {
        fields.contains { $0.kind == .expect && Self.equalsIgnoringCase(bytes, $0.value, "100-continue") }
    }

    /// The first value of a header, by case-insensitive name.
    func first(name: String) -> String? {
        for field in fields where Self.equalsIgnoringCase(bytes, field.name, name) { return string(field.value) }
        return nil
    }

    /// Whether a field must not be forwarded as it is: hop-by-hop or named by `Connection`.
    func isHopByHop(_ field: HeaderField) -> Bool {
        switch field.kind {
        case .connection, .expect, .hopByHop: return true
        case .other: return !connectionNamed.isEmpty && connectionNamed.contains { Self.equalsIgnoringCase(bytes, field.name, $0) }
        default: return false
        }
    }

    /// Appends the lines of the fields that `keep` accepts; consecutive lines are copied at once.
    func copyFields(to out: inout ByteBuffer, keeping keep: (HeaderField) -> Bool) {
        bytes.withUnsafeReadableBytes { raw in
            var run: Int?
            for field in fields {
                if keep(field) {
                    if run == nil { run = field.name.lowerBound }
                } else if let start = run {
                    out.writeBytes(UnsafeRawBufferPointer(rebasing: raw[start..<field.name.lowerBound]))
                    run = nil
                }
            }
            // The last field's line ends before the empty line that ends the head.
            if let start = run { out.writeBytes(UnsafeRawBufferPointer(rebasing: raw[start..<(raw.count - 2)])) }
        }
    }

    func string(_ range: Range<Int>) -> String {
        bytes.getString(at: bytes.readerIndex + range.lowerBound, length: range.count) ?? ""
    }

    /// Appends the bytes of `range` to `out`.
    func copy(_ range: Range<Int>, to out: inout ByteBuffer) {
        bytes.withUnsafeReadableBytes { raw in _ = out.writeBytes(UnsafeRawBufferPointer(rebasing: raw[range])) }
    }

    private func bytesEqual(_ range: Range<Int>, _ text: String) -> Bool {
        range.count == text.utf8.count && bytes.withUnsafeReadableBytes { raw in
            zip(raw[range], text.utf8).allSatisfy { $0 == $1 }
        }
    }

    /// ASCII case-insensitive comparison of `range` with `name`.
    static func equalsIgnoringCase(_ bytes: ByteBuffer, _ range: Range<Int>, _ name: String) -> Bool {
        bytes.withUnsafeReadableBytes { HeadParser.equalsIgnoringCase($0, range, name) }
    }

    @inline(__always) static func lower(_ byte: UInt8) -> UInt8 { byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte }
}
