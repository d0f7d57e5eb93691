import CCompression

/// The codecs of the Prometheus and Loki wire formats: gzip/deflate (zlib) and snappy block format.
public enum Compression {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// gzip (`windowBits` 31) or raw zlib deflate (`windowBits` 15).
    public enum Container: Sendable {
        case gzip, zlib

        var windowBits: Int32 { self == .gzip ? 31 : 15 }
    }

    public static func compress(_ input: [UInt8], as container: Container = .gzip, level: Int32 = 6) -> [UInt8] {
        var stream = z_stream()
        deflateInit2_(&stream, level, Z_DEFLATED, container.windowBits, 8, Z_DEFAULT_STRATEGY,
                      ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 32)
        var input = input
        let produced = input.withUnsafeMutableBufferPointer { inBuffer in
            output.withUnsafeMutableBufferPointer { outBuffer in
                stream.next_in = inBuffer.baseAddress
                stream.avail_in = uInt(inBuffer.count)
                stream.next_out = outBuffer.baseAddress
                stream.avail_out = uInt(outBuffer.count)
                deflate(&stream, Z_FINISH)
                return outBuffer.count - Int(stream.avail_out)
            }
        }
        output.removeSubrange(produced...)
        return output
    }

    /// Inflates gzip or zlib data (detected from the header), refusing output beyond `limit` bytes.
    public static func decompress(_ input: [UInt8], limit: Int) throws -> [UInt8] {
        var stream = z_stream()
        // 47 = 32 (detect gzip or zlib header) + 15 (window size).
        guard inflateInit2_(&stream, 47, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure(description: "cannot start inflating")
        }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var input = input
        try input.withUnsafeMutableBufferPointer { inBuffer in
            stream.next_in = inBuffer.baseAddress
            stream.avail_in = uInt(inBuffer.count)
            while true {
                let (status, produced) = chunk.withUnsafeMutableBufferPointer { outBuffer in
                    stream.next_out = outBuffer.baseAddress
                    stream.avail_out = uInt(outBuffer.count)
                    let status = inflate(&stream, Z_NO_FLUSH)
                    return (status, outBuffer.count - Int(stream.avail_out))
                }
                output.append(contentsOf: chunk[..<produced])
                if output.count > limit { throw Failure(description: "decompressed body larger than \(limit) bytes") }
                if status == Z_STREAM_END { return }
                guard status == Z_OK || (status == Z_BUF_ERROR && produced > 0) else {
                    throw Failure(description: "invalid compressed body (zlib status \(status))")
                }
                if stream.avail_in == 0 && produced == 0 { throw Failure(description: "truncated compressed body") }
            }
        }
        return output
    }

    public static func snappyCompress(_ input: [UInt8]) -> [UInt8] {
        var length = snappy_max_compressed_length(input.count)
        var output = [UInt8](repeating: 0, count: length)
        input.withUnsafeBufferPointer { inBuffer in
            output.withUnsafeMutableBufferPointer { outBuffer in
                inBuffer.withMemoryRebound(to: CChar.self) { source in
                    outBuffer.withMemoryRebound(to: CChar.self) { target in
                        _ = snappy_compress(source.baseAddress, source.count, target.baseAddress, &length)
                    }
                }
            }
        }
        output.removeSubrange(length...)
        return output
    }

    public static func snappyDecompress(_ input: [UInt8], limit: Int) throws -> [UInt8] {
        var length = 0
        let sized = input.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { snappy_uncompressed_length($0.baseAddress, $0.count, &length) }
        }
        guard sized == SNAPPY_OK else { throw Failure(description: "invalid snappy block") }
        guard length <= limit else { throw Failure(description: "decompressed body larger than \(limit) bytes") }
        var output = [UInt8](repeating: 0, count: length)
        let status = input.withUnsafeBufferPointer { inBuffer in
            output.withUnsafeMutableBufferPointer { outBuffer in
                inBuffer.withMemoryRebound(to: CChar.self) { source in
                    outBuffer.withMemoryRebound(to: CChar.self) { target in
                        snappy_uncompress(source.baseAddress, source.count, target.baseAddress, &length)
                    }
                }
            }
        }
        guard status == SNAPPY_OK else { throw Failure(description: "invalid snappy block") }
        return output
    }

    public static func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        UInt32(CCompression.crc32(0, bytes.baseAddress?.assumingMemoryBound(to: Bytef.self), uInt(bytes.count)))
    }
}
