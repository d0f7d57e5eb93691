import CEventIO
import Glibc

/// The outcome of one read or write through a transport.
enum TransferResult {
    /// Bytes moved (for a read, 0 is never returned: the end of the stream is `closed`).
    case transferred(Int)
    /// Nothing can move until the socket is ready again.
    case wouldBlock
    /// The peer ended the stream.
    case closed
    case failed(Int32)
}

/// How a stream socket's bytes cross its connection: what `StreamSocket` calls for every read and
/// write, so that the socket's buffering, back-pressure and readiness handling stay the same
/// whatever carries the bytes. One enumeration of concrete transports (no protocol existential):
/// plaintext, TLS over libssl (which reads and writes plaintext and reports `wouldBlock` while it
/// waits for the socket), or, on a listener that takes both, the wait for the first byte that tells
/// them apart.
enum SocketTransport {
    case plain(PlainTransport)
    case tls(TLSTransport)
    /// Permissive: a TLS handshake (first byte 0x16, a handshake record) starts TLS with the
    /// context; anything else stays plaintext.
    case sniffing(TLSContext)

    /// The first byte of a TLS connection: the content type of a handshake record.
    static let handshakeRecord: UInt8 = 0x16
}

struct PlainTransport {
    let fd: Int32

    /// Reads into `space`, retrying on EINTR.
    func read(into space: UnsafeMutableRawBufferPointer) -> TransferResult {
        while true {
            let count = Glibc.read(fd, space.baseAddress, space.count)
            if count > 0 { return .transferred(count) }
            if count == 0 { return .closed }
            switch errno {
            case EINTR: continue
            case EAGAIN: return .wouldBlock
            case let code: return .failed(code)
            }
        }
    }

    /// Writes `count` buffers described by `iovecs` (one `write` for one, `writev` for more),
    /// retrying on EINTR.
    func write(_ iovecs: UnsafeMutablePointer<iovec>, count: Int) -> TransferResult {
        while true {
            let written = count == 1 ? Glibc.write(fd, iovecs[0].iov_base, iovecs[0].iov_len) : Glibc.writev(fd, iovecs, Int32(count))
            if written >= 0 { return .transferred(written) }
            switch errno {
            case EINTR: continue
            case EAGAIN: return .wouldBlock
            case let code: return .failed(code)
            }
        }
    }
}
