import NIOCore

extension ByteBuffer? {
    /// Adds received bytes to what is still unread; an empty buffer is simply replaced (no copy).
    mutating func append(_ received: ByteBuffer) {
        if var unread = self, unread.readableBytes > 0 {
            var received = received
            self = nil  // one owner of the storage while writing: no copy on write
            unread.writeBuffer(&received)
            self = unread
        } else {
            self = received
        }
    }
}

/// Finds where a message body ends in the bytes that follow its head, handing the body on as
/// slices of the received buffers. Chunked bodies are checked chunk by chunk and passed on as
/// they are (framing and trailers included), or reduced to their data for an HTTP/1.0 reader.
struct BodyFramer {
    struct Malformed: Error {
        let reason: String
    }

    private enum State {
        case length(remaining: Int)
        case untilClose
        case chunkSize(value: Int, digits: Int)
        case chunkExtension(size: Int, bytes: Int)
        case chunkSizeLF(size: Int)
        case chunkData(remaining: Int)
        case chunkDataCR, chunkDataLF
        case trailerLineStart(bytes: Int)
        case trailerLine(bytes: Int)
        case trailerLineLF(bytes: Int)
        case lastLF
        case done
    }

    private static let maxExtensionBytes = 4096
    private static let maxTrailerBytes = 64 * 1024

    private var state: State
    /// Hand on only the data of a chunked body, without its framing.
    private let dechunk: Bool

    init(_ length: BodyLength, dechunk: Bool = false) {
        switch length {
        case .none: state = .done
        case .length(let count): state = .length(remaining: count)
        case .chunked: state = .chunkSize(value: 0, digits: 0)
        case .untilClose: state = .untilClose
        }
        self.dechunk = dechunk
    }

    var isDone: Bool {
        if case .done = state { return true }
        return false
    }

    /// A response body without a length: it ends when the connection closes.
    var endsWithConnection: Bool {
        if case .untilClose = state { return true }
        return false
    }

    /// Takes the body bytes at the front of `buffer`, passing them to `emit`; returns true once
    /// the body is complete (bytes after it stay in `buffer`).
    mutating func read(_ buffer: inout ByteBuffer, emit: (ByteBuffer) -> Void) throws -> Bool {
        switch state {
        case .done:
            return true
        case .untilClose:
            if buffer.readableBytes > 0 { emit(buffer.readSlice(length: buffer.readableBytes)!) }
            return false
        case .length(let remaining):
            let count = min(remaining, buffer.readableBytes)
            if count > 0 { emit(buffer.readSlice(length: count)!) }
            state = remaining == count ? .done : .length(remaining: remaining - count)
            return remaining == count
        default:
            return try readChunked(&buffer, emit: emit)
        }
    }

    private mutating func readChunked(_ buffer: inout ByteBuffer, emit: (ByteBuffer) -> Void) throws -> Bool {
        let start = buffer.readerIndex
        var dataSlices: [(at: Int, count: Int)] = []
        let consumed: Int = try buffer.withUnsafeReadableBytes { raw in
            var i = 0
            loop: while i < raw.count {
                let byte = raw[i]
                switch state {
                case .chunkSize(let value, let digits):
                    if let digit = Self.hexValue(byte) {
                        guard digits < 15 else { throw Malformed(reason: "chunk size too large") }
                        state = .chunkSize(value: value << 4 | digit, digits: digits + 1)
                    } else if digits > 0 && (byte == UInt8(ascii: ";") || byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t")) {
                        state = .chunkExtension(size: value, bytes: 0)
                    } else if digits > 0 && byte == UInt8(ascii: "\r") {
                        state = .chunkSizeLF(size: value)
                    } else {
                        throw Malformed(reason: "invalid chunk size")
                    }
                case .chunkExtension(let size, let bytes):
                    if byte == UInt8(ascii: "\r") {
                        state = .chunkSizeLF(size: size)
                    } else {
                        guard byte == 0x09 || (byte >= 0x20 && byte != 0x7F), bytes < Self.maxExtensionBytes else {
                            throw Malformed(reason: "invalid chunk extension")
                        }
                        state = .chunkExtension(size: size, bytes: bytes + 1)
                    }
                case .chunkSizeLF(let size):
                    guard byte == UInt8(ascii: "\n") else { throw Malformed(reason: "chunk size line without LF") }
                    state = size == 0 ? .trailerLineStart(bytes: 0) : .chunkData(remaining: size)
                case .chunkData(let remaining):
                    let count = min(remaining, raw.count - i)
                    if dechunk { dataSlices.append((i, count)) }
                    i += count
                    state = remaining == count ? .chunkDataCR : .chunkData(remaining: remaining - count)
                    continue loop
                case .chunkDataCR:
                    guard byte == UInt8(ascii: "\r") else { throw Malformed(reason: "chunk data longer than its size") }
                    state = .chunkDataLF
                case .chunkDataLF:
                    guard byte == UInt8(ascii: "\n") else { throw Malformed(reason: "chunk data without CRLF") }
                    state = .chunkSize(value: 0, digits: 0)
                case .trailerLineStart(let bytes):
                    if byte == UInt8(ascii: "\r") {
                        state = .lastLF
                    } else {
                        guard byte > 0x20 && byte != 0x7F else { throw Malformed(reason: "invalid trailer field") }
                        state = .trailerLine(bytes: bytes + 1)
                    }
                case .trailerLine(let bytes):
                    guard bytes < Self.maxTrailerBytes else { throw Malformed(reason: "trailer section too large") }
                    if byte == UInt8(ascii: "\r") {
                        state = .trailerLineLF(bytes: bytes + 1)
                    } else {
                        guard byte == 0x09 || (byte >= 0x20 && byte != 0x7F) else { throw Malformed(reason: "invalid trailer field") }
                        state = .trailerLine(bytes: bytes + 1)
                    }
                case .trailerLineLF(let bytes):
                    guard byte == UInt8(ascii: "\n") else { throw Malformed(reason: "trailer line without LF") }
                    state = .trailerLineStart(bytes: bytes + 1)
                case .lastLF:
                    guard byte == UInt8(ascii: "\n") else { throw Malformed(reason: "chunked body without final CRLF") }
                    state = .done
                    return i + 1
                default:
                    preconditionFailure("not a chunked state")
                }
                i += 1
            }
            return i
        }
        if dechunk {
            for slice in dataSlices { emit(buffer.getSlice(at: start + slice.at, length: slice.count)!) }
            buffer.moveReaderIndex(forwardBy: consumed)
        } else if consumed > 0 {
            emit(buffer.readSlice(length: consumed)!)
        }
        return isDone
    }

    @inline(__always) private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 0x30...0x39: Int(byte - 0x30)
        case 0x41...0x46: Int(byte - 0x41 + 10)
        case 0x61...0x66: Int(byte - 0x61 + 10)
        default: nil
        }
    }
}
