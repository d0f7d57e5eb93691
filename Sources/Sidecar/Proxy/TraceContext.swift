import NIOCore

/// The trace a request belongs to, read from W3C `traceparent`, B3 (single `b3` or multi `X-B3-*`)
/// or started here, and written back with a new span id for the next hop.
struct TraceContext {
    enum Format { case w3c, b3Single, b3Multi, started }

    /// The 128-bit trace id, as two halves.
    var trace: (high: UInt64, low: UInt64)
    /// The caller's span, nil when the trace starts here.
    var parentSpan: UInt64?
    /// This hop's span.
    var span: UInt64
    var sampled: Bool
    var format: Format
    /// The caller's `x-request-id`; nil when this hop makes one up from `madeUpRequestID`.
    private var givenRequestID: String?
    private var madeUpRequestID: (UInt64, UInt64)

    /// 32 lowercase hex digits.
    var traceID: String { Hex.string { Hex.write(trace.high, to: &$0); Hex.write(trace.low, to: &$0) } }
    /// 16 lowercase hex digits.
    var spanID: String { Hex.string { Hex.write(span, to: &$0) } }
    var parentSpanID: String? { parentSpan.map { parent in Hex.string { Hex.write(parent, to: &$0) } } }
    var requestID: String { givenRequestID ?? Hex.string { writeRequestID(to: &$0) } }

    /// Reads the incoming headers; starts a new trace when none is present or valid.
    init(headers: MessageHead, random: inout FastRandom) {
        span = random.next() | 1  // never the invalid all-zero id
        madeUpRequestID = (random.next(), random.next())
        // Without any trace field (one pass over the kinds), no lookup by name is needed.
        let carriesTrace = headers.fields.contains {
            switch $0.kind {
            case .traceparent, .b3, .b3Multi, .requestID: true
            default: false
            }
        }
        givenRequestID = carriesTrace ? headers.first(name: "x-request-id") : nil
        if !carriesTrace {
            (trace, parentSpan, sampled, format) = ((random.next(), random.next() | 1), nil, true, .started)
        } else if let parent = headers.first(name: "traceparent"), let parsed = Self.parseTraceparent(parent) {
            (trace, parentSpan, sampled, format) = (parsed.trace, parsed.span, parsed.sampled, .w3c)
        } else if let single = headers.first(name: "b3"), let parsed = Self.parseB3Single(single) {
            (trace, parentSpan, sampled, format) = (parsed.trace, parsed.span, parsed.sampled, .b3Single)
        } else if let trace = headers.first(name: "x-b3-traceid").flatMap(Self.traceID),
                  let span = headers.first(name: "x-b3-spanid").flatMap(Self.spanID) {
            let flag = headers.first(name: "x-b3-sampled") ?? "1"
            let debug = headers.first(name: "x-b3-flags") == "1"
            (self.trace, parentSpan, sampled, format) = (trace, span, flag == "1" || flag == "true" || debug, .b3Multi)
        } else {
            (trace, parentSpan, sampled, format) = ((random.next(), random.next() | 1), nil, true, .started)
        }
    }

    /// Whether `write(into:)` writes its own value of headers of this kind (the incoming ones are dropped).
    func replaces(_ kind: FieldKind) -> Bool {
        switch kind {
        case .traceparent, .requestID: true
        case .b3: format == .b3Single
        case .b3Multi: format == .b3Multi
        default: false
        }
    }

    /// Writes this hop's header lines: `traceparent` always, B3 in the form it came in (a trace that
    /// starts here is W3C only), and `x-request-id`.
    func write(into out: inout ByteBuffer) {
        out.writeStaticString("traceparent: 00-")
        writeTraceID(to: &out)
        out.writeStaticString("-")
        Hex.write(span, to: &out)
        out.writeStaticString(sampled ? "-01\r\n" : "-00\r\n")
        switch format {
        case .b3Single:
            out.writeStaticString("b3: ")
            writeTraceID(to: &out)
            out.writeStaticString("-")
            Hex.write(span, to: &out)
            out.writeStaticString(sampled ? "-1" : "-0")
            if let parentSpan {
                out.writeStaticString("-")
                Hex.write(parentSpan, to: &out)
            }
            out.writeStaticString("\r\n")
        case .b3Multi:
            out.writeStaticString("x-b3-traceid: ")
            writeTraceID(to: &out)
            out.writeStaticString("\r\nx-b3-spanid: ")
            Hex.write(span, to: &out)
            if let parentSpan {
                out.writeStaticString("\r\nx-b3-parentspanid: ")
                Hex.write(parentSpan, to: &out)
            }
            out.writeStaticString(sampled ? "\r\nx-b3-sampled: 1\r\n" : "\r\nx-b3-sampled: 0\r\n")
        case .w3c, .started:
            break
        }
        out.writeStaticString("x-request-id: ")
        if let givenRequestID { out.writeString(givenRequestID) } else { writeRequestID(to: &out) }
        out.writeStaticString("\r\n")
    }

    private func writeTraceID(to out: inout ByteBuffer) {
        Hex.write(trace.high, to: &out)
        Hex.write(trace.low, to: &out)
    }

    /// A version 4 UUID from the made-up id's bits.
    private func writeRequestID(to out: inout ByteBuffer) {
        let (high, low) = madeUpRequestID
        let version4 = high & ~0xF000 | 0x4000
        let variant = low & ~(0xC << 60) | (0x8 << 60)
        Hex.write(version4 >> 32, digits: 8, to: &out)
        out.writeStaticString("-")
        Hex.write(version4 >> 16, digits: 4, to: &out)
        out.writeStaticString("-")
        Hex.write(version4, digits: 4, to: &out)
        out.writeStaticString("-")
        Hex.write(variant >> 48, digits: 4, to: &out)
        out.writeStaticString("-")
        Hex.write(variant, digits: 12, to: &out)
    }

    static func parseTraceparent(_ value: String) -> (trace: (high: UInt64, low: UInt64), span: UInt64, sampled: Bool)? {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, isHex(parts[0], count: 2), parts[0] != "ff", isHex(parts[3], count: 2),
              let trace = traceID(parts[1]), parts[1].utf8.count == 32, trace != (0, 0),
              let span = spanID(parts[2]), span != 0,
              let flags = UInt8(parts[3], radix: 16) else { return nil }
        if parts[0] == "00" && parts.count != 4 { return nil }
        return (trace, span, flags & 1 == 1)
    }

    static func parseB3Single(_ value: String) -> (trace: (high: UInt64, low: UInt64), span: UInt64, sampled: Bool)? {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 2, let trace = traceID(parts[0]), let span = spanID(parts[1]) else { return nil }
        let sampled = parts.count < 3 || parts[2] == "1" || parts[2] == "d"
        return (trace, span, sampled)
    }

    /// A 128-bit trace id of 32 hex digits, or a 64-bit B3 one of 16 (the high half is then zero).
    static func traceID(_ text: some StringProtocol) -> (high: UInt64, low: UInt64)? {
        if isHex(text, count: 32) { return (UInt64(text.prefix(16), radix: 16)!, UInt64(text.suffix(16), radix: 16)!) }
        if isHex(text, count: 16) { return (0, UInt64(text, radix: 16)!) }
        return nil
    }

    static func spanID(_ text: some StringProtocol) -> UInt64? {
        isHex(text, count: 16) ? UInt64(text, radix: 16) : nil
    }

    static func isHex(_ text: some StringProtocol, count: Int) -> Bool {
        text.utf8.count == count && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) || (0x41...0x46).contains($0) }
    }
}

/// Lowercase hex digits of ids, written straight into the bytes of a head.
enum Hex {
    /// The low `digits` nibbles of `value`, most significant first.
    static func write(_ value: UInt64, digits: Int = 16, to out: inout ByteBuffer) {
        out.writeWithUnsafeMutableBytes(minimumWritableBytes: digits) { raw in
            for i in 0..<digits {
                let nibble = UInt8(truncatingIfNeeded: value >> (UInt64(digits - 1 - i) * 4)) & 0xF
                raw[i] = nibble < 10 ? 0x30 + nibble : 0x61 + nibble - 10
            }
            return digits
        }
    }

    /// What `body` writes, as a string.
    static func string(_ body: (inout ByteBuffer) -> Void) -> String {
        var buffer = ByteBuffer()
        body(&buffer)
        return String(buffer: buffer)
    }
}
/// A small, fast generator (xorshift128+) for span ids, jitter and load balancing; ids need to be
/// unique, not secret, and the system generator costs a syscall per call.
struct FastRandom {
    private var s0: UInt64
    private var s1: UInt64

    init() {
        var system = SystemRandomNumberGenerator()
        s0 = system.next() | 1
        s1 = system.next()
    }

    mutating func next() -> UInt64 {
        var x = s0
        let y = s1
        s0 = y
        x ^= x << 23
        s1 = x ^ y ^ (x >> 17) ^ (y >> 26)
        return s1 &+ y
    }

    /// Uniform in `0..<bound` (bound > 0).
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }

    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
