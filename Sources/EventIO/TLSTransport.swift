import COpenSSL
import Glibc

/// A certificate or key that OpenSSL would not load, or a TLS connection that could not start.
public struct TLSError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One side of mutual TLS: the certificate and key presented, the roots a peer's chain must end in.
/// Connections started with it share it; a new one replaces it for new connections (rotation).
public final class TLSContext: @unchecked Sendable {
    let pointer: OpaquePointer
    public let isServer: Bool

    /// A server context requires the client's certificate; a client context checks the server's.
    public init(server: Bool, certificatePEM: String, privateKeyPEM: String, rootsPEM: String) throws {
        guard let pointer = trellis_context_new(server ? 1 : 0, certificatePEM, privateKeyPEM, rootsPEM) else {
            throw TLSError("cannot load the certificate, key and roots: \(TLSTransport.lastError() ?? "no certificate or root found")")
        }
        self.pointer = pointer
        self.isServer = server
    }

    /// A public listener's context: `certificateChainPEM` (the leaf first) and its key; clients
    /// present no certificate.
    public init(serverCertificateChainPEM: String, privateKeyPEM: String) throws {
        guard let pointer = trellis_server_context_new(serverCertificateChainPEM, privateKeyPEM) else {
            throw TLSError("cannot load the certificate chain and key: \(TLSTransport.lastError() ?? "no certificate found")")
        }
        self.pointer = pointer
        self.isServer = true
    }

    deinit { SSL_CTX_free(pointer) }
}

/// A TLS session a client may resume on its next connection to the same server (no full handshake).
/// OpenSSL's sessions are reference-counted and may be shared between threads.
public final class TLSSession: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { SSL_SESSION_free(pointer) }
}

/// The bytes of one TLS connection over a non-blocking socket, through libssl: reads and writes
/// plaintext, and drives the handshake as they need it (`wouldBlock` while it waits for the socket).
///
/// A read returns at most one record while more may be decrypted or waiting, so a short read does
/// not mean the socket is drained (see `StreamSocket`).
final class TLSTransport {
    private let ssl: OpaquePointer
    /// Why the connection failed, once it has (a handshake refused, a bad record).
    private(set) var failure: String?
    private var cachedPeerURI: String??

    init(fd: Int32, context: TLSContext, expectedPeer: String?, resuming session: TLSSession? = nil) throws {
        guard let ssl = SSL_new(context.pointer) else { throw TLSError("SSL_new failed: \(Self.lastError() ?? "")") }
        self.ssl = ssl
        SSL_set_fd(ssl, fd)
        if context.isServer { SSL_set_accept_state(ssl) } else { SSL_set_connect_state(ssl) }
        trellis_expect_peer(ssl, expectedPeer)
        if let session { SSL_set_session(ssl, session.pointer) }
    }

    /// The connection's session, to resume on a later connection (a client's, once the handshake is done).
    var session: TLSSession? { handshakeFinished ? SSL_get1_session(ssl).map(TLSSession.init) : nil }

    deinit { trellis_ssl_free(ssl) }

    var handshakeFinished: Bool { SSL_is_init_finished(ssl) == 1 }

    /// The URI SAN of the peer's verified certificate (its SPIFFE ID), once the handshake is done.
    var peerURI: String? {
        if let cachedPeerURI { return cachedPeerURI }
        guard handshakeFinished else { return nil }
        var buffer = [CChar](repeating: 0, count: 512)
        let length = trellis_peer_uri(ssl, &buffer, Int32(buffer.count))
        let uri = length >= 0 ? String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
        cachedPeerURI = .some(uri)
        return uri
    }

    /// Whether this connection resumed an earlier session (no full handshake).
    var resumed: Bool { SSL_session_reused(ssl) == 1 }

    func read(into space: UnsafeMutableRawBufferPointer) -> TransferResult {
        let count = SSL_read(ssl, space.baseAddress, Int32(min(space.count, Int(Int32.max))))
        return count > 0 ? .transferred(Int(count)) : outcome(of: count)
    }

    /// The largest TLS record's plaintext: buffers are gathered up to this size into one record.
    static let recordSize = 16_384

    /// Writes the buffers in order, as far as TLS takes them now. Several small buffers (a head and
    /// its body) are gathered into `scratch` and sent as one record, as `writev` sends them in one
    /// segment; a retry after `wouldBlock` gathers the same leading bytes again, as OpenSSL requires.
    func write(_ iovecs: UnsafeMutablePointer<iovec>, count: Int, scratch: UnsafeMutableRawBufferPointer) -> TransferResult {
        guard count > 1, iovecs[0].iov_len < scratch.count, let base = scratch.baseAddress else { return write(iovecs, count: count) }
        var filled = 0
        for index in 0..<count where filled < scratch.count {
            let part = min(iovecs[index].iov_len, scratch.count - filled)
            (base + filled).copyMemory(from: iovecs[index].iov_base!, byteCount: part)
            filled += part
        }
        let written = SSL_write(ssl, base, Int32(filled))
        return written > 0 ? .transferred(Int(written)) : outcome(of: written)
    }

    /// Writes the buffers in order with one `SSL_write` each, as far as TLS takes them now.
    private func write(_ iovecs: UnsafeMutablePointer<iovec>, count: Int) -> TransferResult {
        var total = 0
        for index in 0..<count {
            let length = iovecs[index].iov_len
            let written = SSL_write(ssl, iovecs[index].iov_base, Int32(length))
            guard written > 0 else {
                let result = outcome(of: written)
                return total > 0 ? .transferred(total) : result
            }
            total += Int(written)
            if Int(written) < length { break }
        }
        return .transferred(total)
    }

    /// Sends `close_notify` if it can now (a close does not wait for the peer's).
    func shutdown() {
        if handshakeFinished, failure == nil { SSL_shutdown(ssl) }
        ERR_clear_error()
    }

    private func outcome(of result: Int32) -> TransferResult {
        let code = SSL_get_error(ssl, result)
        switch code {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wouldBlock
        case SSL_ERROR_ZERO_RETURN:
            return .closed
        case SSL_ERROR_SYSCALL where errno == EAGAIN || errno == EINTR:
            ERR_clear_error()
            return .wouldBlock
        case SSL_ERROR_SYSCALL:
            failure = Self.lastError() ?? (errno == 0 ? "connection closed during TLS" : String(cString: strerror(errno)))
            return errno == 0 ? .closed : .failed(errno)
        default:
            failure = (Self.lastError() ?? "TLS error \(code)") + verificationFailure
            return .failed(EPROTO)
        }
    }

    /// Why the peer's certificate was refused (`: certificate has expired`, …), or nothing.
    private var verificationFailure: String {
        let result = SSL_get_verify_result(ssl)
        return result == X509_V_OK ? "" : ": " + String(cString: X509_verify_cert_error_string(result))
    }

    /// OpenSSL's text for the last error of this thread, clearing it.
    static func lastError() -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        trellis_last_error(&buffer, Int32(buffer.count))
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.isEmpty ? nil : text
    }
}
