import NIOCore
import NIOHTTP1
import NIOPosix
import TrellisHTTP

/// Receives what an upstream connection reads while it serves one request.
protocol UpstreamReceiver: AnyObject {
    func upstreamRead(_ part: HTTPClientResponsePart, from connection: UpstreamConnection)
    func upstreamReadComplete(from connection: UpstreamConnection)
    func upstreamClosed(_ connection: UpstreamConnection)
    func upstreamWritabilityChanged(_ connection: UpstreamConnection)
}

/// One keep-alive HTTP/1.1 connection to an upstream instance; serves one request at a time.
final class UpstreamConnection: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private(set) var channel: (any Channel)!
    weak var receiver: (any UpstreamReceiver)?
    var idleSince = NIODeadline.now()
    weak var pool: ConnectionPool?

    func handlerAdded(context: ChannelHandlerContext) { channel = context.channel }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        receiver?.upstreamRead(unwrapInboundIn(data), from: self)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        receiver?.upstreamReadComplete(from: self)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        receiver?.upstreamWritabilityChanged(self)
    }

    func channelInactive(context: ChannelHandlerContext) {
        pool?.connectionClosed(self)
        receiver?.upstreamClosed(self)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Keep-alive connections to one instance. Limits (max connections, max pending requests) are the
/// cluster's, shared by all its pools. Confined to the data-plane event loop.
final class ConnectionPool {
    enum Acquired {
        case ready(UpstreamConnection)
        case failed(String)
        /// The cluster's pending-request limit is reached.
        case overflow
    }

    private let target: EndpointInfo
    private let loop: any EventLoop
    private unowned let limits: ClusterLimits
    private var idle: [UpstreamConnection] = []
    private var waiters: [(id: Int, connectTimeout: TimeAmount, deliver: (Acquired) -> Void)] = []
    private var nextWaiterID = 0
    /// Set when the instance left the cluster: connections close as they come back.
    var retired = false {
        didSet { if retired { closeIdle(olderThan: nil) } }
    }
    private(set) var openConnections = 0

    init(target: EndpointInfo, loop: any EventLoop, limits: ClusterLimits) {
        self.target = target
        self.loop = loop
        self.limits = limits
    }

    var idleCount: Int { idle.count }

    /// An idle connection that is still open, if there is one.
    func takeIdle() -> UpstreamConnection? {
        while let connection = idle.popLast() {
            if connection.channel.isActive { return connection }
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
        guard reusable, !retired, connection.channel.isActive else {
            connection.channel.close(promise: nil)
            return
        }
        if !waiters.isEmpty {
            let waiter = waiters.removeFirst()
            limits.pendingRequests -= 1
            waiter.deliver(.ready(connection))
            return
        }
        connection.idleSince = .now()
        idle.append(connection)
    }

    func connectionClosed(_ connection: UpstreamConnection) {
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
            connection.channel.close(promise: nil)
        }
    }

    private func connect(timeout: TimeAmount, _ deliver: @escaping (Acquired) -> Void) {
        openConnections += 1
        limits.openConnections += 1
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.recvAllocator, value: DataPlane.readSizes)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Headers come from a parsed request or from the sidecar itself: valid already.
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(enableOutboundHeaderValidation: false)
                    try channel.pipeline.syncOperations.addHandler(UpstreamConnection())
                }
            }
        let connecting: EventLoopFuture<any Channel>
        if let address = try? SocketAddress(ipAddress: target.host, port: target.port) {
            connecting = bootstrap.connect(to: address)
        } else {
            connecting = bootstrap.connect(host: target.host, port: target.port)
        }
        let address = target.address
        connecting.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                let connection = try! channel.pipeline.syncOperations.handler(type: UpstreamConnection.self)
                connection.pool = self
                deliver(.ready(connection))
            case .failure(let error):
                self.openConnections -= 1
                self.limits.openConnections -= 1
                deliver(.failed("connect to \(address) failed: \(HTTPClient.describe(error))"))
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
