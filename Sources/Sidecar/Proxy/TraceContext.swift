import NIOCore

/// The trace a request belongs to, read from W3C `traceparent`, B3 (single `b3` or multi `X-B3-*`)
/// or started here, and written back with a new span id for the next hop.
struct TraceContext {
    enum Format { case w3c, b3Single, b3Multi, started }

    /// 32 lowercase hex digits.
    var traceID: String
    /// The caller's span (16 hex digits), nil when the trace starts here.
    var parentSpanID: String?
    /// This hop's span.
    var spanID: String
    var sampled: Bool
    var format: Format
    var requestID: String

    /// Reads the incoming headers; starts a new trace when none is present or valid.
    init(headers: MessageHead, random: inout FastRandom) {
        spanID = random.hex(bytes: 8)
        // Without any trace field (one pass over the kinds), no lookup by name is needed.
        let carriesTrace = headers.fields.contains {
            switch $0.kind {
            case .traceparent, .b3, .b3Multi, .requestID: true
            default: false
            }
        }
        requestID = (carriesTrace ? headers.first(name: "x-request-id") : nil) ?? random.uuid()
        if !carriesTrace {
            (traceID, parentSpanID, sampled, format) = (random.hex(bytes: 16), nil, true, .started)
        } else if let parent = headers.first(name: "traceparent"), let parsed = Self.parseTraceparent(parent) {
            (traceID, parentSpanID, sampled, format) = (parsed.trace, parsed.span, parsed.sampled, .w3c)
        } else if let single = headers.first(name: "b3"), let parsed = Self.parseB3Single(single) {
            (traceID, parentSpanID, sampled, format) = (parsed.trace, parsed.span, parsed.sampled, .b3Single)
        } else if let trace = headers.first(name: "x-b3-traceid").flatMap(Self.normalizedTraceID),
                  let span = headers.first(name: "x-b3-spanid").flatMap({ Self.isHex($0, count: 16) ? $0.lowercased() : nil }) {
            let flag = headers.first(name: "x-b3-sampled") ?? "1"
            let debug = headers.first(name: "x-b3-flags") == "1"
            (traceID, parentSpanID, sampled, format) = (trace, span, flag == "1" || flag == "true" || debug, .b3Multi)
        } else {
            (traceID, parentSpanID, sampled, format) = (random.hex(bytes: 16), nil, true, .started)
        }
    }

    /// Whether `write(into:)` writes its own value of headers of this kind (the incoming ones are dropped).
    func replaces(_ kind: FieldKind) -> Bool {
        switch kind {
        case .traceparent, .requestID: true
        case .b3: format == .b3Single
        case .b3Multi: format == .b3Multi || format == .started
        default: false
        }
    }

    /// Writes this hop's header lines: `traceparent` always, B3 in the form it came in (multi when
    /// the trace starts here, for Zipkin-instrumented services), and `x-request-id`.
    func write(into out: inout ByteBuffer) {
        HeaderRules.writeLine("traceparent", "00-\(traceID)-\(spanID)-\(sampled ? "01" : "00")", to: &out)
        switch format {
        case .b3Single:
            var value = "\(traceID)-\(spanID)-\(sampled ? "1" : "0")"
            if let parentSpanID { value += "-\(parentSpanID)" }
            HeaderRules.writeLine("b3", value, to: &out)
        case .b3Multi, .started:
            HeaderRules.writeLine("x-b3-traceid", traceID, to: &out)
            HeaderRules.writeLine("x-b3-spanid", spanID, to: &out)
            if let parentSpanID { HeaderRules.writeLine("x-b3-parentspanid", parentSpanID, to: &out) }
            HeaderRules.writeLine("x-b3-sampled", sampled ? "1" : "0", to: &out)
        case .w3c:
            break
        }
        HeaderRules.writeLine("x-request-id", requestID, to: &out)
    }

    static func parseTraceparent(_ value: String) -> (trace: String, span: String, sampled: Bool)? {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, isHex(parts[0], count: 2), parts[0] != "ff",
              isHex(parts[1], count: 32), isHex(parts[2], count: 16), isHex(parts[3], count: 2),
              !parts[1].allSatisfy({ $0 == "0" }), !parts[2].allSatisfy({ $0 == "0" }),
              let flags = UInt8(parts[3], radix: 16) else { return nil }
        if parts[0] == "00" && parts.count != 4 { return nil }
        return (parts[1].lowercased(), parts[2].lowercased(), flags & 1 == 1)
    }

    static func parseB3Single(_ value: String) -> (trace: String, span: String, sampled: Bool)? {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 2, let trace = normalizedTraceID(parts[0]), isHex(parts[1], count: 16) else { return nil }
        let sampled = parts.count < 3 || parts[2] == "1" || parts[2] == "d"
        return (trace, parts[1].lowercased(), sampled)
    }

    /// B3 trace ids may be 64-bit; W3C needs 128, so they are left-padded with zeros.
    static func normalizedTraceID(_ text: some StringProtocol) -> String? {
        if isHex(text, count: 32) { return text.lowercased() }
        if isHex(text, count: 16) { return String(repeating: "0", count: 16) + text.lowercased() }
        return nil
    }

    static func isHex(_ text: some StringProtocol, count: Int) -> Bool {
        text.utf8.count == count && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) || (0x41...0x46).contains($0) }
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

    mutating func hex(bytes: Int) -> String {
        String(unsafeUninitializedCapacity: bytes * 2) { out in
            fillHex(out, count: bytes * 2)
            return bytes * 2
        }
    }

    /// A version 4 UUID, formatted in one allocation.
    mutating func uuid() -> String {
        String(unsafeUninitializedCapacity: 36) { out in
            fillHex(out, count: 36)
            for dash in [8, 13, 18, 23] { out[dash] = UInt8(ascii: "-") }
            out[14] = UInt8(ascii: "4")
            out[19] = Array("89ab".utf8)[Int(next() & 3)]
            return 36
        }
    }

    private mutating func fillHex(_ out: UnsafeMutableBufferPointer<UInt8>, count: Int) {
        var word = next()
        for i in 0..<count {
            if i % 16 == 0 && i > 0 { word = next() }
            let nibble = UInt8(truncatingIfNeeded: word >> (UInt64(i % 16) * 4)) & 0xF
            out[i] = nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
        }
    }
}
