/// The protobuf wire format, as much as Loki's `logproto.PushRequest` needs.
struct ProtoWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func varintField(_ field: Int, _ value: UInt64) {
        guard value != 0 else { return }
        varint(UInt64(field << 3))
        varint(value)
    }

    mutating func bytesField(_ field: Int, _ value: some Collection<UInt8>) {
        varint(UInt64(field << 3 | 2))
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    mutating func stringField(_ field: Int, _ value: String) {
        bytesField(field, value.utf8)
    }

    /// A nested message, encoded by `body`.
    mutating func messageField(_ field: Int, _ body: (inout ProtoWriter) -> Void) {
        var inner = ProtoWriter()
        body(&inner)
        bytesField(field, inner.bytes)
    }
}

struct ProtoReader {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private let bytes: ArraySlice<UInt8>
    private var position: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        position = bytes.startIndex
    }

    var atEnd: Bool { position >= bytes.endIndex }

    mutating func varint() throws(Failure) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while position < bytes.endIndex {
            let byte = bytes[position]
            position += 1
            guard shift < 64 else { break }
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
            shift += 7
        }
        throw Failure(description: "malformed varint")
    }

    /// The next field number and wire type.
    mutating func field() throws(Failure) -> (number: Int, wireType: Int) {
        let key = try varint()
        guard key >> 3 > 0, key >> 3 < 1 << 29 else { throw Failure(description: "invalid field number") }
        return (Int(key >> 3), Int(key & 7))
    }

    mutating func lengthDelimited() throws(Failure) -> ArraySlice<UInt8> {
        let length = try varint()
        guard length <= UInt64(bytes.endIndex - position) else { throw Failure(description: "field longer than the message") }
        let slice = bytes[position..<position + Int(length)]
        position += Int(length)
        return slice
    }

    mutating func string() throws(Failure) -> String {
        String(decoding: try lengthDelimited(), as: UTF8.self)
    }

    mutating func skip(wireType: Int) throws(Failure) {
        switch wireType {
        case 0: _ = try varint()
        case 1: try advance(8)
        case 2: _ = try lengthDelimited()
        case 5: try advance(4)
        default: throw Failure(description: "unsupported wire type \(wireType)")
        }
    }

    private mutating func advance(_ count: Int) throws(Failure) {
        guard bytes.endIndex - position >= count else { throw Failure(description: "truncated field") }
        position += count
    }
}
