import CEventIO
import Dispatch
import Glibc
import NIOCore

/// Opens TCP connections on a reactor: non-blocking connect with a timeout; host names are
/// resolved off the reactor's thread.
public enum Connector {
    /// Connects to `host:port` and calls `done` on the reactor's thread, never before returning.
    public static func connect(host: String, port: Int, timeout: TimeAmount, reactor: Reactor,
                               _ done: @escaping (Result<StreamSocket, SocketError>) -> Void) {
        if let address = try? SocketAddress(ipAddress: host, port: port) {
            reactor.atEndOfTurn { connect(to: address, timeout: timeout, reactor: reactor, done) }
            return
        }
        let deadline = reactor.now + timeout
        let resume = SendableBox(done)
        DispatchQueue.global().async {
            let resolved = try? SocketAddress.makeAddressResolvingHost(host, port: port)
            reactor.execute {
                guard let address = resolved else { return resume.value(.failure(.unresolved(host))) }
                connect(to: address, timeout: deadline - reactor.now, reactor: reactor, resume.value)
            }
        }
    }

    private static func connect(to address: SocketAddress, timeout: TimeAmount, reactor: Reactor,
                                _ done: @escaping (Result<StreamSocket, SocketError>) -> Void) {
        let fd = socket(Int32(address.protocol.rawValue), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return done(.failure(.system("socket", errno))) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let result = address.withSockAddr { Glibc.connect(fd, $0, socklen_t($1)) }
        if result == 0 {
            return done(Result { try StreamSocket(fd: fd, reactor: reactor, remoteIP: address.ipAddress, registered: false) }
                .mapError { $0 as? SocketError ?? .system("connect", EIO) })
        }
        guard errno == EINPROGRESS else {
            let code = errno
            Glibc.close(fd)
            return done(.failure(.system("connect", code)))
        }
        let pending = PendingConnect(fd: fd, address: address, reactor: reactor, done: done)
        do {
            try reactor.register(fd, events: EPOLLOUT.rawValue, handler: pending)
        } catch {
            Glibc.close(fd)
            return done(.failure(error as? SocketError ?? .system("epoll_ctl", EIO)))
        }
        pending.timer = reactor.schedule(in: timeout) { pending.fail(.timedOut(timeout)) }
    }
}

/// A connect in progress: completes when the socket turns writable, fails at the timeout.
private final class PendingConnect: ReadinessHandler {
    let fd: Int32
    let address: SocketAddress
    let reactor: Reactor
    var done: ((Result<StreamSocket, SocketError>) -> Void)?
    var timer: ReactorTimer?

    init(fd: Int32, address: SocketAddress, reactor: Reactor, done: @escaping (Result<StreamSocket, SocketError>) -> Void) {
        self.fd = fd
        self.address = address
        self.reactor = reactor
        self.done = done
    }

    func ready(_ events: UInt32) {
        var code: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length) != 0 { code = errno }
        guard code == 0 else { return fail(.system("connect", code)) }
        guard let done else { return }
        self.done = nil
        timer?.cancel()
        done(Result { try StreamSocket(fd: fd, reactor: reactor, remoteIP: address.ipAddress, registered: true) }
            .mapError { $0 as? SocketError ?? .system("connect", EIO) })
    }

    func fail(_ error: SocketError) {
        guard let done else { return }
        self.done = nil
        timer?.cancel()
        reactor.close(fd)
        done(.failure(error))
    }
}

/// Carries a value that is only used on the reactor's thread across a hop through another thread.
private struct SendableBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
