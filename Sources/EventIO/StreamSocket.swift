import CEventIO
import Glibc
import NIOCore

/// Told what happens on a stream socket. Called on the reactor's thread.
public protocol StreamSocketDelegate: AnyObject {
    /// Bytes received; the buffer is the delegate's to keep.
    func socketRead(_ socket: StreamSocket, _ bytes: ByteBuffer)
    /// The reads of this turn are over.
    func socketReadComplete(_ socket: StreamSocket)
    /// `isWritable` changed: queued bytes went above the high mark or back below the low one.
    func socketWritabilityChanged(_ socket: StreamSocket)
    /// The socket is closed (by either side or after an error); nothing more is delivered.
    func socketClosed(_ socket: StreamSocket)
}

/// A non-blocking TCP connection on a reactor: reads as much as is there when it is readable
/// (buffers that start small and grow while reads fill them, so idle connections hold nothing),
/// queues writes until `flush`, writes them with one `write`/`writev` and waits for the socket to
/// drain when the kernel takes less. A peer that closes its side closes the socket.
///
/// Registered once, edge-triggered, for both directions: no `epoll_ctl` per pause or wait, and a
/// socket that was just served does not jump the queue of those that became ready meanwhile (with
/// level triggering, the kernel checks it again first on the next wait).
public final class StreamSocket: ReadinessHandler {
    static let maxIovecs = 64
    private static let minimumReadSize = 512
    private static let maximumReadSize = 65_536
    private static let maxReadsPerTurn = 16
    /// Queued bytes above which the socket reports itself unwritable, and below which writable again.
    private static let highWaterMark = 64 * 1024
    private static let lowWaterMark = 32 * 1024

    public let reactor: Reactor
    private let fd: Int32
    /// What reads and writes the connection's bytes.
    private var transport: SocketTransport
    public var delegate: (any StreamSocketDelegate)?
    public private(set) var isOpen = true
    public private(set) var isWritable = true
    /// The peer's IP address, for logs and `x-forwarded-for`.
    public let remoteIP: String?
    private var queued: [ByteBuffer] = []
    private var queuedBytes = 0
    private var readSize = minimumReadSize
    private var readingPaused = false
    private var awaitingWritable = false
    private var closesWhenFlushed = false
    /// The peer finished sending (or the connection failed): read on until the end is seen, since
    /// no further event will come for it.
    private var peerFinished = false
    static let events = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue

    /// Takes over `fd`, a connected non-blocking socket already registered with the reactor or not.
    init(fd: Int32, reactor: Reactor, remoteIP: String?, registered: Bool) throws {
        self.fd = fd
        self.transport = .plain(PlainTransport(fd: fd))
        self.reactor = reactor
        self.remoteIP = remoteIP
        if registered {
            reactor.reassign(fd, to: self)
            reactor.modify(fd, events: Self.events)
        } else {
            try reactor.register(fd, events: Self.events, handler: self)
        }
    }

    // MARK: TLS

    /// Carries the connection over TLS with `context` from now on (call before the first read or
    /// write). A client names the SPIFFE ID the server must present; a server with
    /// `plaintextAllowed` also takes plaintext, told apart by the first byte (permissive mode). A
    /// client may offer an earlier connection's session to skip the full handshake.
    public func startTLS(_ context: TLSContext, expectedPeer: String? = nil, plaintextAllowed: Bool = false,
                         resuming session: TLSSession? = nil) throws {
        transport = plaintextAllowed
            ? .sniffing(context) : .tls(try TLSTransport(fd: fd, context: context, expectedPeer: expectedPeer, resuming: session))
    }

    /// The TLS session, once established, for a later connection to resume.
    public var tlsSession: TLSSession? {
        if case .tls(let tls) = transport { return tls.session }
        return nil
    }

    /// Whether the connection is carried over TLS (false while a permissive listener waits for the first byte).
    public var isTLS: Bool {
        if case .tls = transport { return true }
        return false
    }

    /// The peer's verified SPIFFE ID (its certificate's URI SAN) once the TLS handshake is done.
    public var peerIdentity: String? {
        if case .tls(let tls) = transport { return tls.peerURI }
        return nil
    }

    /// Whether the TLS session was resumed rather than fully negotiated.
    public var resumedTLSSession: Bool {
        if case .tls(let tls) = transport { return tls.resumed }
        return false
    }

    /// Why TLS failed on this connection (handshake refused, bad record), once it has.
    public var tlsFailure: String? {
        if case .tls(let tls) = transport { return tls.failure }
        return nil
    }

    private func transportRead(into space: UnsafeMutableRawBufferPointer) -> TransferResult {
        switch transport {
        case .plain(let plain): return plain.read(into: space)
        case .tls(let tls): return tls.read(into: space)
        case .sniffing(let context):
            var first: UInt8 = 0
            let peeked = recv(fd, &first, 1, Int32(MSG_PEEK))
            if peeked == 0 { return .closed }
            guard peeked == 1 else { return errno == EAGAIN || errno == EINTR ? .wouldBlock : .failed(errno) }
            if first == SocketTransport.handshakeRecord {
                guard let tls = try? TLSTransport(fd: fd, context: context, expectedPeer: nil) else { return .failed(EPROTO) }
                transport = .tls(tls)
            } else {
                transport = .plain(PlainTransport(fd: fd))
            }
            return transportRead(into: space)
        }
    }

    private func transportWrite(_ iovecs: UnsafeMutablePointer<iovec>, count: Int) -> TransferResult {
        switch transport {
        case .plain(let plain): return plain.write(iovecs, count: count)
        case .tls(let tls): return tls.write(iovecs, count: count, scratch: reactor.recordScratch)
        // Nothing is written before the peer has spoken on a permissive listener.
        case .sniffing: return .wouldBlock
        }
    }

    /// Whether a read that did not fill its buffer means the kernel has nothing more (plaintext);
    /// TLS hands out one record at a time.
    private var shortReadDrains: Bool {
        if case .plain = transport { return true }
        return false
    }

    // MARK: Writing

    /// Queues `bytes`; they leave with the next `flush`.
    public func write(_ bytes: ByteBuffer) {
        guard isOpen, bytes.readableBytes > 0 else { return }
        queued.append(bytes)
        queuedBytes += bytes.readableBytes
        if isWritable && queuedBytes > Self.highWaterMark {
            isWritable = false
            delegate?.socketWritabilityChanged(self)
        }
    }

    /// Writes what is queued, as far as the kernel takes it now; the rest follows when it can.
    public func flush() {
        guard isOpen, !awaitingWritable, !queued.isEmpty else { return }
        writeQueued()
    }

    /// Closes the socket once everything queued is written.
    public func closeAfterFlush() {
        guard isOpen else { return }
        if queued.isEmpty {
            close()
        } else {
            closesWhenFlushed = true
            flush()
        }
    }

    private func writeQueued() {
        while !queued.isEmpty {
            let count = min(queued.count, Self.maxIovecs)
            let iovecs = reactor.iovecs
            for index in 0..<count {
                // The buffers stay queued, so their bytes stay where the pointers say until the write returns.
                queued[index].withUnsafeReadableBytes {
                    iovecs[index] = iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count)
                }
            }
            switch transportWrite(iovecs, count: count) {
            case .transferred(let written):
                consume(written)
            case .wouldBlock:
                awaitingWritable = true
                return
            case .closed, .failed:
                close()
                return
            }
        }
        if closesWhenFlushed { close() }
    }

    /// Drops `count` written bytes from the front of the queue.
    private func consume(_ count: Int) {
        queuedBytes -= count
        var left = count
        var done = 0
        while left > 0 {
            let size = queued[done].readableBytes
            if size <= left {
                left -= size
                done += 1
            } else {
                queued[done].moveReaderIndex(forwardBy: left)
                left = 0
            }
        }
        if done == queued.count {
            queued.removeAll(keepingCapacity: true)
        } else if done > 0 {
            queued.removeFirst(done)
        }
        if !isWritable && queuedBytes < Self.lowWaterMark {
            isWritable = true
            delegate?.socketWritabilityChanged(self)
        }
    }

    // MARK: Reading

    /// Stops reading until `resumeReading`; bytes wait in the kernel (and the peer slows down).
    public func pauseReading() {
        readingPaused = true
    }

    /// Reads again, starting with what arrived while paused (at the end of this turn).
    public func resumeReading() {
        guard readingPaused else { return }
        readingPaused = false
        reactor.readAgain(self)
    }

    func ready(_ events: UInt32) {
        if events & EPOLLOUT.rawValue != 0 && awaitingWritable {
            awaitingWritable = false
            writeQueued()
            guard isOpen else { return }
        }
        if events & (EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 { peerFinished = true }
        if readingPaused {
            // A reset or a closed connection is not worth waiting for.
            if events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 { close() }
        } else if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            readAvailable()
        }
    }

    /// Reads until the kernel has nothing more (a read that does not fill its buffer; the end of
    /// the stream once the peer finished), or up to `maxReadsPerTurn` reads, after which the rest
    /// waits for the next turn.
    private func readAvailable() {
        var reads = 0
        reading: while isOpen && !readingPaused {
            if reads == Self.maxReadsPerTurn {
                reactor.readAgain(self)
                break
            }
            var buffer = reactor.readBuffer(capacity: readSize)
            let capacity = buffer.writableBytes
            var result = TransferResult.wouldBlock
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 0) { space in
                result = transportRead(into: space)
                if case .transferred(let count) = result { return count }
                return 0
            }
            switch result {
            case .transferred(let count):
                reads += 1
                adaptReadSize(read: count, capacity: capacity)
                delegate?.socketRead(self, buffer)
                reactor.recycle(&buffer)
                if count < capacity && !peerFinished && shortReadDrains { break reading }
            case .wouldBlock:
                break reading
            case .closed, .failed:
                close()
                return
            }
        }
        if reads > 0 && isOpen { delegate?.socketReadComplete(self) }
    }

    /// Grows the read size while reads fill the buffer, shrinks it when they use less than half.
    private func adaptReadSize(read count: Int, capacity: Int) {
        if count == capacity {
            readSize = min(readSize * 2, Self.maximumReadSize)
        } else if count * 2 < readSize && readSize > Self.minimumReadSize {
            readSize /= 2
        }
    }

    // MARK: Closing

    /// Closes the socket now; queued bytes are dropped. Tells the delegate, then forgets it.
    public func close() {
        guard isOpen else { return }
        isOpen = false
        if case .tls(let tls) = transport { tls.shutdown() }
        reactor.close(fd)
        queued.removeAll()
        queuedBytes = 0
        let delegate = delegate
        self.delegate = nil
        delegate?.socketClosed(self)
    }
}
