import CEventIO
import Glibc
import NIOCore

/// A listening TCP socket on a reactor; hands each accepted connection to `accepted`.
public final class Listener: ReadinessHandler {
    private static let maxAcceptsPerTurn = 64

    private let reactor: Reactor
    private let fd: Int32
    private let accepted: (StreamSocket) -> Void
    /// The port it listens on (the one the system chose when asked for 0).
    public let port: Int
    private var isOpen = true

    /// Binds `host:port` (resolved once, now) with SO_REUSEADDR and listens. Call on the reactor's
    /// thread, or before it starts. With `reusePort`, several listeners (one per event loop) share
    /// the port and the kernel spreads new connections over them (SO_REUSEPORT).
    public init(host: String, port: Int, backlog: Int32 = 4096, reusePort: Bool = false, reactor: Reactor,
                accepted: @escaping (StreamSocket) -> Void) throws {
        let address = try SocketAddress.makeAddressResolvingHost(host, port: port)
        let fd = socket(Int32(address.protocol.rawValue), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError.system("socket", errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if reusePort { setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size)) }
        let bound = address.withSockAddr { Glibc.bind(fd, $0, socklen_t($1)) }
        guard bound == 0, Glibc.listen(fd, backlog) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw SocketError.system("bind \(host):\(port)", code)
        }
        self.fd = fd
        self.port = try Self.localPort(fd)
        self.reactor = reactor
        self.accepted = accepted
        try reactor.register(fd, events: EPOLLIN.rawValue, handler: self)
    }

    func ready(_ events: UInt32) {
        for _ in 0..<Self.maxAcceptsPerTurn {
            guard isOpen else { return }
            let (client, address) = Self.withAddress {
                accept4(fd, $0, $1, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
            }
            guard client >= 0 else {
                switch errno {
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // Out of descriptors or memory: waiting connections stay queued in the kernel
                    // until some close, rather than the loop spinning on them.
                    pauseAccepting(for: .milliseconds(100))
                    return
                case EAGAIN: return
                default: continue  // one connection failed while queued (ECONNABORTED, EPROTO, …)
                }
            }
            var one: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            guard let socket = try? StreamSocket(fd: client, reactor: reactor, remoteIP: address?.ipAddress, registered: false) else {
                Glibc.close(client)
                continue
            }
            accepted(socket)
        }
    }

    private func pauseAccepting(for delay: TimeAmount) {
        reactor.modify(fd, events: 0)
        reactor.schedule(in: delay) { [self] in
            if isOpen { reactor.modify(fd, events: EPOLLIN.rawValue) }
        }
    }

    /// Stops listening; connections already accepted stay open.
    public func close() {
        guard isOpen else { return }
        isOpen = false
        reactor.close(fd)
    }

    private static func localPort(_ fd: Int32) throws -> Int {
        let (result, address) = withAddress { getsockname(fd, $0, $1) }
        guard result == 0, let port = address?.port else { throw SocketError.system("getsockname", errno) }
        return port
    }

    /// Calls `system` (accept4, getsockname) with room for a socket address; returns its result
    /// and the IPv4 or IPv6 address it filled in.
    private static func withAddress(
        _ system: (UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
    ) -> (result: Int32, address: SocketAddress?) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { system($0, &length) }
        }
        guard result >= 0 else { return (result, nil) }
        let address: SocketAddress? = withUnsafeBytes(of: storage) { raw in
            switch Int32(storage.ss_family) {
            case AF_INET: SocketAddress(raw.load(as: sockaddr_in.self), host: "")
            case AF_INET6: SocketAddress(raw.load(as: sockaddr_in6.self), host: "")
            default: nil
            }
        }
        return (result, address)
    }
}
