import EventIO
import NIOCore
import Policy

/// Receives what an upstream connection reads while it serves one request.
protocol UpstreamReceiver: AnyObject {
    func upstreamRead(_ part: UpstreamConnection.Part, from connection: UpstreamConnection)
    func upstreamReadComplete(from connection: UpstreamConnection)
    func upstreamClosed(_ connection: UpstreamConnection)
    func upstreamWritabilityChanged(_ connection: UpstreamConnection)
}

/// One keep-alive HTTP/1.1 connection to an upstream instance; serves one request at a time and
/// reads its response: the head, then the body as slices of the bytes received, then the end.
final class UpstreamConnection: StreamSocketDelegate {
    enum Part {
        case head(MessageHead)
        case body(ByteBuffer)
        case end
    }

    private enum Reading {
        case nothing
        case head(toHEAD: Bool, dechunk: Bool)
        case body(BodyFramer)
    }

    let socket: StreamSocket
    /// The proxy handler whose request this connection serves; cleared when the exchange ends.
    /// Strong references (no `weak`): weakly referenced objects pay for every retain and release.
    var receiver: (any UpstreamReceiver)?
    var idleSince = NIODeadline.now()
    var pool: ConnectionPool?
    /// False once the upstream broke the protocol or said it closes: not to be used again.
    private(set) var reusable = true
    private var reading = Reading.nothing
    private var inbox: ByteBuffer?
    /// Set at the first bytes from the upstream (its TLS handshake is complete by then).
    private var sawBytes = false

    init(socket: StreamSocket) {
        self.socket = socket
    }

    /// Called when a request is written: its response is read next. `dechunk` hands on a chunked
    /// body without its framing.
    func expectResponse(toHEAD: Bool, dechunk: Bool) {
        reading = .head(toHEAD: toHEAD, dechunk: dechunk)
    }

    func socketRead(_ socket: StreamSocket, _ bytes: ByteBuffer) {
        if !sawBytes {
            sawBytes = true
            if socket.isTLS { pool?.tlsEstablished(socket) }
        }
        inbox.append(bytes)
        while let available = inbox?.readableBytes, available > 0 {
            switch reading {
            case .nothing:
                // Bytes nobody asked for: the connection cannot be trusted with another request.
                reusable = false
                socket.close()
                return
            case .head(let toHEAD, let dechunk):
                switch HeadParser.response(from: &inbox!, toHEAD: toHEAD) {
                case .incomplete:
                    return
                case .invalid:
                    reusable = false
                    socket.close()
                    return
                case .complete(let head):
                    // Interim responses (100 Continue, 103 Early Hints) are not passed on; the
                    // sidecar never forwards an upgrade, so 101 is a broken exchange.
                    if head.status < 200 {
                        if head.status == 101 {
                            reusable = false
                            socket.close()
                            return
                        }
                        continue
                    }
                    if !head.keepAlive { reusable = false }
                    let body = BodyFramer(head.body, dechunk: dechunk)
                    reading = .body(body)
                    receiver?.upstreamRead(.head(head), from: self)
                    if body.isDone { finishResponse() }
                }
            case .body(var body):
                do {
                    let ended = try body.read(&inbox!) { receiver?.upstreamRead(.body($0), from: self) }
                    reading = .body(body)
                    if ended { finishResponse() }
                } catch {
                    reusable = false
                    socket.close()
                    return
                }
            }
        }
        inbox = nil
    }

    private func finishResponse() {
        reading = .nothing
        if let left = inbox?.readableBytes, left > 0 { reusable = false }
        receiver?.upstreamRead(.end, from: self)
    }

    func socketReadComplete(_ socket: StreamSocket) {
        receiver?.upstreamReadComplete(from: self)
    }

    func socketWritabilityChanged(_ socket: StreamSocket) {
        receiver?.upstreamWritabilityChanged(self)
    }

    func socketClosed(_ socket: StreamSocket) {
        reusable = false
        // A body without a length ends with the connection.
        if case .body(let body) = reading, body.endsWithConnection { finishResponse() }
        pool?.connectionClosed(self)
        receiver?.upstreamClosed(self)
    }
}

/// Keep-alive connections to one instance. Limits (max connections, max pending requests) are the
/// cluster's, shared by all its pools. Confined to the data-plane reactor.
final class ConnectionPool {
    enum Acquired {
        case ready(UpstreamConnection)
        case failed(String)
        /// The cluster's pending-request limit is reached.
        case overflow
    }

    private let target: EndpointInfo
    /// The service the instance belongs to: the identity it must present over mutual TLS.
    private let service: String
    private let mesh: MeshTLS?
    /// The last full handshake's session, offered by new connections to the instance.
    private var resumption: TLSSession?
    private let reactor: Reactor
    private unowned let limits: ClusterLimits
    private var idle: [UpstreamConnection] = []
    private var waiters: [(id: Int, connectTimeout: TimeAmount, deliver: (Acquired) -> Void)] = []
    private var nextWaiterID = 0
    /// Set when the instance left the cluster: connections close as they come back.
    var retired = false {
        didSet { if retired { closeIdle(olderThan: nil) } }
    }
    private(set) var openConnections = 0

    init(target: EndpointInfo, service: String, reactor: Reactor, limits: ClusterLimits, mesh: MeshTLS? = nil) {
        self.target = target
        self.service = service
        self.mesh = mesh
        self.reactor = reactor
        self.limits = limits
    }

    var idleCount: Int { idle.count }

    /// An idle connection that is still open, if there is one.
    func takeIdle() -> UpstreamConnection? {
        while let connection = idle.popLast() {
            if connection.socket.isOpen { return connection }
        }
        return nil
    }

    /// When `takeIdle` found nothing: opens a connection, or queues the caller. Returns a waiter id
    /// that `cancel(waiter:)` takes when the caller gives up first.
    func acquire(connectTimeout: TimeAmount, _ deliver: @escaping (Acquired) -> Void) -> Int? {
        if limits.openConnections < limits.policy.maxConnections {
            connect(timeout: connectTimeout, deliver)
            return nil
        }
        guard limits.pendingRequests < limits.policy.maxPendingRequests else {
            deliver(.overflow)
            return nil
        }
        nextWaiterID += 1
        waiters.append((nextWaiterID, connectTimeout, deliver))
        limits.pendingRequests += 1
        return nextWaiterID
    }

    func cancel(waiter id: Int) {
        if let index = waiters.firstIndex(where: { $0.id == id }) {
            waiters.remove(at: index)
            limits.pendingRequests -= 1
        }
    }

    /// Takes a connection back after a complete exchange; `reusable` is false when either side
    /// asked to close or the exchange was cut short.
    func release(_ connection: UpstreamConnection, reusable: Bool) {
        connection.receiver = nil
        guard reusable, connection.reusable, !retired, connection.socket.isOpen else {
            connection.socket.close()
            return
        }
        if !waiters.isEmpty {
            let waiter = waiters.removeFirst()
            limits.pendingRequests -= 1
            waiter.deliver(.ready(connection))
            return
        }
        connection.idleSince = reactor.now
        idle.append(connection)
    }

    /// A connection's TLS handshake is done: counted, and its session kept for the next connection to resume.
    func tlsEstablished(_ socket: StreamSocket) {
        mesh?.handshakeCompleted(direction: "outbound", resumed: socket.resumedTLSSession)
        if !socket.resumedTLSSession { resumption = socket.tlsSession }
    }

    func connectionClosed(_ connection: UpstreamConnection) {
        if let failure = connection.socket.tlsFailure { mesh?.recordFailure(direction: "outbound", failure) }
        openConnections -= 1
        limits.openConnections -= 1
        idle.removeAll { $0 === connection }
        // A slot is free: open a connection for the longest waiter.
        if !waiters.isEmpty && limits.openConnections < limits.policy.maxConnections {
            let waiter = waiters.removeFirst()
            limits.pendingRequests -= 1
            connect(timeout: waiter.connectTimeout, waiter.deliver)
        }
    }

    /// Closes idle connections unused since `cutoff` (all when nil).
    func closeIdle(olderThan cutoff: NIODeadline?) {
        for connection in idle where cutoff == nil || connection.idleSince < cutoff! {
            connection.socket.close()
        }
    }

    private func connect(timeout: TimeAmount, _ deliver: @escaping (Acquired) -> Void) {
        openConnections += 1
        limits.openConnections += 1
        let address = target.address
        Connector.connect(host: target.host, port: target.port, timeout: timeout, reactor: reactor) { [self] result in
            switch result {
            case .success(let socket):
                if target.mtls, let mesh, let client = mesh.client {
                    do {
                        try socket.startTLS(client, expectedPeer: mesh.expectedURI(of: service), resuming: resumption)
                    } catch {
                        socket.close()
                        openConnections -= 1
                        limits.openConnections -= 1
                        return deliver(.failed("TLS to \(address) failed: \(error)"))
                    }
                }
                let connection = UpstreamConnection(socket: socket)
                socket.delegate = connection
                connection.pool = self
                deliver(.ready(connection))
            case .failure(let error):
                openConnections -= 1
                limits.openConnections -= 1
                deliver(.failed("connect to \(address) failed: \(error)"))
            }
        }
    }
}

/// Connection and request counts of one cluster, checked against its circuit breaker.
final class ClusterLimits {
    var policy: CircuitBreakerPolicy
    var openConnections = 0
    var pendingRequests = 0
    var activeRequests = 0

    init(policy: CircuitBreakerPolicy) { self.policy = policy }
}
