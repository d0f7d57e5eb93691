// TrellisHTTP: a small NIO HTTP/1.1 server and client for control-plane traffic (the registry API,
// admin and collector endpoints, calls to the registry), plus systemd readiness notification.

import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Answers one request; the future may complete much later (blocking queries).
public protocol HTTPResponder: Sendable {
    func respond(to request: HTTPRequest, on eventLoop: any EventLoop, cancellation: CancellationSignal) -> EventLoopFuture<HTTPResponse>
}

/// Fired when the client of a pending request goes away, so long waits can be released early.
public final class CancellationSignal: Sendable {
    private struct State {
        var handlers: [@Sendable () -> Void] = []
        var cancelled = false
    }

    private let state = Mutex(State())

    public init() {}

    /// Runs `handler` on cancellation (at once if already cancelled).
    public func onCancel(_ handler: @escaping @Sendable () -> Void) {
        let runNow = state.withLock { state -> Bool in
            if state.cancelled { return true }
            state.handlers.append(handler)
            return false
        }
        if runNow { handler() }
    }

    func cancel() {
        let toRun = state.withLock { state -> [@Sendable () -> Void] in
            state.cancelled = true
            defer { state.handlers = [] }
            return state.handlers
        }
        toRun.forEach { $0() }
    }
}

/// A small HTTP/1.1 server on SwiftNIO: keep-alive, pipelining, and the limits of `HTTPLimits`.
public final class HTTPServer: Sendable {
    private let channel: any Channel
    public let localAddress: SocketAddress

    private init(channel: any Channel) {
        self.channel = channel
        self.localAddress = channel.localAddress!
    }

    /// Where a server listens: a TCP host and port, or a unix socket path (replaced if it exists).
    public enum BindAddress: Sendable {
        case tcp(host: String, port: Int)
        case unixSocket(path: String)
    }

    public static func start(host: String, port: Int, group: any EventLoopGroup, limits: HTTPLimits,
                             responder: any HTTPResponder, logger: Logger) async throws -> HTTPServer {
        try await start(.tcp(host: host, port: port), group: group, limits: limits, responder: responder, logger: logger)
    }

    /// Starts serving on `address`; `secure`, when given, adds the first handlers of each connection
    /// (TLS termination), so the same HTTP pipeline serves plaintext and HTTPS.
    public static func start(_ address: BindAddress, group: any EventLoopGroup, limits: HTTPLimits, responder: any HTTPResponder,
                             logger: Logger, secure: (@Sendable (any Channel) throws -> Void)? = nil) async throws -> HTTPServer {
        let clients = ClientConnectionCount()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try secure?(channel)
                    let pipeline = channel.pipeline.syncOperations
                    if let client = channel.remoteAddress?.ipAddress {
                        guard clients.admit(client, limit: limits.maxConnectionsPerClient) else {
                            let refusal = RawRefusal.bytes(.tooManyRequests, "too many connections from \(client) "
                                + "(limit \(limits.maxConnectionsPerClient))")
                            return try pipeline.addHandler(ConnectionRefusal(refusal))
                        }
                        channel.closeFuture.whenComplete { _ in clients.release(client) }
                    }
                    let deadlines = ConnectionDeadlineHandler(limits: limits)
                    try pipeline.addHandler(deadlines)
                    try pipeline.configureHTTPServerPipeline(withErrorHandling: false, withEncoderConfiguration: .init(),
                                                             withDecoderLimitConfiguration: limits.decoderLimits)
                    try pipeline.addHandler(ProtocolErrorResponder())
                    try pipeline.addHandler(HTTPRequestHandler(responder: responder, maxBodySize: limits.maxBodySize,
                                                               deadlines: deadlines, logger: logger))
                }
            }
        let channel: any Channel
        switch address {
        case .tcp(let host, let port):
            channel = try await bootstrap.childChannelOption(.socketOption(.tcp_nodelay), value: 1).bind(host: host, port: port).get()
        case .unixSocket(let path):
            channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        }
        return HTTPServer(channel: channel)
    }

    public func close() async {
        try? await channel.close()
    }
}

final class HTTPRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let responder: any HTTPResponder
    private let maxBodySize: Int
    private let deadlines: ConnectionDeadlineHandler
    private let logger: Logger
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    /// The answer to the request being read when it is refused before the responder sees it.
    private var refusal: HTTPResponse?
    /// The request was answered before its body (a refused expectation); its remaining parts are dropped.
    private var ignoringRest = false
    private var cancellation: CancellationSignal?

    init(responder: any HTTPResponder, maxBodySize: Int, deadlines: ConnectionDeadlineHandler, logger: Logger) {
        self.responder = responder
        self.maxBodySize = maxBodySize
        self.deadlines = deadlines
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            deadlines.headReceived()
            self.head = head
            body.clear()
            refusal = Self.framingProblem(head).map { .text(.badRequest, $0) }
            if refusal == nil, let length = head.headers.first(name: "content-length").flatMap(Int.init), length > maxBodySize {
                refusal = tooLarge
            }
            if let expectation = head.headers.first(name: "expect") {
                answer(expectation: expectation, of: head, context: context)
            }
        case .body(var chunk):
            guard refusal == nil, !ignoringRest else { return }
            if body.readableBytes + chunk.readableBytes > maxBodySize {
                refusal = tooLarge
                body.clear()
            } else {
                body.writeBuffer(&chunk)
            }
        case .end:
            deadlines.requestReceived()
            ignoringRest = false
            guard let head else { return }
            self.head = nil
            if let refusal {
                self.refusal = nil
                write(refusal, for: head, context: context, close: true)
                return
            }
            if head.method == .OPTIONS && head.uri == "*" {
                return write(HTTPResponse(status: .ok), for: head, context: context, close: !head.isKeepAlive)
            }
            let request = HTTPRequest(method: head.method, uri: Self.originForm(head.uri), headers: head.headers, body: body)
            body = ByteBuffer()
            let signal = CancellationSignal()
            cancellation = signal
            let future = responder.respond(to: request, on: context.eventLoop, cancellation: signal)
            future.hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
                self.cancellation = nil
                switch result {
                case .success(let response):
                    self.write(response, for: head, context: context, close: !head.isKeepAlive)
                case .failure(let error):
                    // The path only: a query may carry a secret (`?token=`).
                    self.logger.error("request failed", metadata: ["path": "\(head.uri.prefix { $0 != "?" })", "error": "\(error)"])
                    self.write(.text(.internalServerError, "\(error)"), for: head, context: context, close: true)
                }
            }
        }
    }

    /// RFC 9110 §10.1.1: a client that sent `Expect: 100-continue` waits for `100 Continue` or a
    /// final answer before its body; the final answer is given at once when the request is already
    /// refused, and any other expectation gets `417`.
    private func answer(expectation: String, of head: HTTPRequestHead, context: ChannelHandlerContext) {
        if expectation.lowercased() != "100-continue" {
            refusal = .text(.expectationFailed, "unsupported expectation \"\(expectation)\"")
        }
        if let refusal {
            self.head = nil
            self.refusal = nil
            ignoringRest = true
            return write(refusal, for: head, context: context, close: true)
        }
        if (head.version.major, head.version.minor) >= (1, 1) {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
        }
    }

    /// The origin form of a request target: a server must accept the absolute form too (RFC 9112 §3.2.2).
    static func originForm(_ target: String) -> String {
        guard let scheme = target.range(of: "://"), target[..<scheme.lowerBound].allSatisfy(\.isLetter) else { return target }
        let afterAuthority = target[scheme.upperBound...].firstIndex { $0 == "/" || $0 == "?" }
        guard let afterAuthority else { return "/" }
        let rest = target[afterAuthority...]
        return rest.hasPrefix("?") ? "/" + rest : String(rest)
    }

    private var tooLarge: HTTPResponse { .text(.payloadTooLarge, "Request body too large (limit \(maxBodySize) bytes)") }

    /// What RFC 9112 makes a server refuse with 400 in a head the decoder accepted: an HTTP/1.1
    /// request without exactly one `Host` (§3.2), any request with several, and an HTTP/1.0
    /// request with `Transfer-Encoding`, whose framing must be treated as faulty (§6.1).
    static func framingProblem(_ head: HTTPRequestHead) -> String? {
        let hosts = head.headers["host"].count
        let http11 = (head.version.major, head.version.minor) >= (1, 1)
        if hosts > 1 { return "too many Host headers" }
        if hosts == 0 && http11 { return "missing required Host header" }
        if !http11 && head.headers.contains(name: "transfer-encoding") {
            return "Transfer-Encoding is not allowed in an HTTP/1.0 request"
        }
        return nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancellation?.cancel()
        cancellation = nil
        context.fireChannelInactive()
    }

    private func write(_ response: HTTPResponse, for request: HTTPRequestHead, context: ChannelHandlerContext, close: Bool) {
        guard context.channel.isActive else { return }
        if let stream = response.stream { return writeStream(response, stream, for: request, context: context) }
        var headers = response.headers
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.readableBytes))
        if close {
            headers.replaceOrAdd(name: "Connection", value: "close")
        } else if request.version.major == 1 && request.version.minor == 0 {
            // An HTTP/1.0 client keeps the connection only when told so.
            headers.replaceOrAdd(name: "Connection", value: "keep-alive")
        }
        let head = HTTPResponseHead(version: request.version, status: response.status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD && response.body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if close {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            deadlines.responseFinished()
        }
    }

    /// Writes a streamed body chunk by chunk (chunked encoding); the connection closes at its end.
    /// Chunks that arrive while the client is not reading (the channel is not writable) are dropped.
    private func writeStream(_ response: HTTPResponse, _ stream: HTTPBodyStream, for request: HTTPRequestHead,
                             context: ChannelHandlerContext) {
        var headers = response.headers
        headers.remove(name: "Content-Length")
        headers.replaceOrAdd(name: "Connection", value: "close")
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: response.status,
                                                                     headers: headers))), promise: nil)
        let loop = context.eventLoop
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: loop)
        let signal = CancellationSignal()
        cancellation = signal
        signal.onCancel { stream.finish() }
        stream.consume { chunk in
            loop.execute {
                let (handler, context) = bound.value
                guard context.channel.isActive else { return }
                if let chunk {
                    // A client that does not read keeps no more than the channel's write buffer:
                    // what comes while it is full is dropped, as Consul's monitor drops lines.
                    guard context.channel.isWritable else { return }
                    context.writeAndFlush(handler.wrapOutboundOut(.body(.byteBuffer(chunk))), promise: nil)
                } else {
                    context.writeAndFlush(handler.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                        context.close(promise: nil)
                    }
                }
            }
        }
    }
}
