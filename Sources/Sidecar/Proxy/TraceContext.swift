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
    var traceID: String { ASCIIWriter.string(maximum: 32) { writeTraceID(to: &$0) } }
    /// 16 lowercase hex digits.
    var spanID: String { ASCIIWriter.string(maximum: 16) { $0.hex(span) } }
    var parentSpanID: String? { parentSpan.map { parent in ASCIIWriter.string(maximum: 16) { $0.hex(parent) } } }
    var requestID: String { givenRequestID ?? ASCIIWriter.string(maximum: 36) { writeRequestID(to: &$0) } }

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
    func write(to out: inout ASCIIWriter) {
        out.write("traceparent: 00-")
        writeTraceID(to: &out)
        out.write("-")
        out.hex(span)
        out.write(sampled ? "-01\r\n" : "-00\r\n")
        switch format {
        case .b3Single:
            out.write("b3: ")
            writeTraceID(to: &out)
            out.write("-")
            out.hex(span)
            out.write(sampled ? "-1" : "-0")
            if let parentSpan {
                out.write("-")
                out.hex(parentSpan)
            }
            out.write("\r\n")
        case .b3Multi:
            out.write("x-b3-traceid: ")
            writeTraceID(to: &out)
            out.write("\r\nx-b3-spanid: ")
            out.hex(span)
            if let parentSpan {
                out.write("\r\nx-b3-parentspanid: ")
                out.hex(parentSpan)
            }
            out.write(sampled ? "\r\nx-b3-sampled: 1\r\n" : "\r\nx-b3-sampled: 0\r\n")
        case .w3c, .started:
            break
        }
        out.write("x-request-id: ")
        if let givenRequestID { out.write(givenRequestID) } else { writeRequestID(to: &out) }
        out.write("\r\n")
    }

    /// The most bytes `write(to:)` writes: traceparent 70, B3 multi 133, a made-up x-request-id 52.
    var maximumLength: Int { 256 + (givenRequestID?.utf8.count ?? 0) }

    private func writeTraceID(to out: inout ASCIIWriter) {
        out.hex(trace.high)
        out.hex(trace.low)
    }

    /// A version 4 UUID from the made-up id's bits.
    private func writeRequestID(to out: inout ASCIIWriter) {
        let (high, low) = madeUpRequestID
        let version4 = high & ~0xF000 | 0x4000
        let variant = low & ~(0xC << 60) | (0x8 << 60)
        out.hex(version4 >> 32, digits: 8)
        out.write("-")
        out.hex(version4 >> 16, digits: 4)
        out.write("-")
        out.hex(version4, digits: 4)
        out.write("-")
        out.hex(variant >> 48, digits: 4)
        out.write("-")
        out.hex(variant, digits: 12)
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

/// Writes ASCII pieces into bytes reserved beforehand: one capacity check for a block of header
/// lines instead of one per piece.
struct ASCIIWriter {
    private let base: UnsafeMutableRawPointer
    private(set) var count = 0

    private init(base: UnsafeMutableRawPointer) { self.base = base }

    /// Appends to `buffer` what `body` writes, which must be at most `maximum` bytes.
    static func append(to buffer: inout ByteBuffer, maximum: Int, _ body: (inout ASCIIWriter) -> Void) {
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: maximum) { raw in
            var writer = ASCIIWriter(base: raw.baseAddress!)
            body(&writer)
            precondition(writer.count <= maximum, "wrote past the reserved bytes")
            return writer.count
        }
    }

    /// What `body` writes (at most `maximum` bytes), as a string.
    static func string(maximum: Int, _ body: (inout ASCIIWriter) -> Void) -> String {
        String(unsafeUninitializedCapacity: maximum) { bytes in
            var writer = ASCIIWriter(base: UnsafeMutableRawPointer(bytes.baseAddress!))
            body(&writer)
            precondition(writer.count <= maximum, "wrote past the reserved bytes")
            return writer.count
        }
    }

    mutating func write(_ text: StaticString) {
        (base + count).copyMemory(from: text.utf8Start, byteCount: text.utf8CodeUnitCount)
        count += text.utf8CodeUnitCount
    }

    mutating func write(_ text: String) {
        var text = text
        text.withUTF8 { utf8 in
            guard let start = utf8.baseAddress else { return }
            (base + count).copyMemory(from: start, byteCount: utf8.count)
            count += utf8.count
        }
    }

    /// The low `digits` nibbles of `value` in lowercase hex, most significant first.
    mutating func hex(_ value: UInt64, digits: Int = 16) {
        var rest = value
        var offset = count + digits
        while offset > count {
            offset -= 1
            let nibble = UInt8(truncatingIfNeeded: rest) & 0xF
            base.storeBytes(of: nibble < 10 ? 0x30 + nibble : 0x57 + nibble, toByteOffset: offset, as: UInt8.self)
            rest >>= 4
        }
        count += digits
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
