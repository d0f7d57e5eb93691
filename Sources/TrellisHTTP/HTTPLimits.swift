import NIOCore
import NIOHTTP1
import Synchronization

/// What one HTTP listener accepts from its clients; past a limit a request is refused before any
/// of it reaches the responder.
public struct HTTPLimits: Sendable {
    /// Largest request body: 413, from `Content-Length` before the body is read, or as a chunked body streams.
    public var maxBodySize: Int
    /// Header fields of one request; more are answered 431. Envoy's `max_headers_count` default.
    public var maxHeaderCount = 100
    /// Bytes of all header names and values of one request, and of any single field; more are
    /// answered 431. Consul's `http_config.max_header_bytes`, whose default is Go's 1 MiB.
    public var maxHeaderBytes = 1 << 20
    /// Time for a complete request head once its first byte arrived; a connection that trickles
    /// one is answered 408 and closed (slow loris). Envoy's `request_headers_timeout`, 10 s here.
    public var requestHeadersTimeout: TimeAmount = .seconds(10)
    /// Time for a request's whole body once its head is complete; a body that stops short of its
    /// `Content-Length` (or its last chunk) is answered 408 and the connection closed.
    public var requestBodyTimeout: TimeAmount = .seconds(30)
    /// Time a keep-alive connection may wait for its next request before it is closed (a request
    /// in progress, such as a blocking query, is never idle).
    public var idleTimeout: TimeAmount = .seconds(60)
    /// Open connections from one client address; more are answered 429 and closed. Consul's
    /// `limits.http_max_conns_per_client`, default 200; 0 switches the limit off.
    public var maxConnectionsPerClient = 200

    public init(maxBodySize: Int) { self.maxBodySize = maxBodySize }

    var decoderLimits: NIOHTTPDecoderLimitConfiguration {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldCount = maxHeaderCount
        limits.maxHeaderFieldSize = maxHeaderBytes
        limits.maxHeaderListSize = maxHeaderBytes
        return limits
    }
}

/// A whole response written as raw bytes ahead of the HTTP encoder, for refusals that end the connection.
enum RawRefusal {
    static func bytes(_ status: HTTPResponseStatus, _ message: String) -> ByteBuffer {
        let body = message + "\n"
        return ByteBuffer(string: "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body)
    }
}

/// The only handler of a connection that is refused: once the connection is active it writes the
/// refusal and closes (a write from the channel initializer would come before the channel is active).
final class ConnectionRefusal: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let refusal: ByteBuffer

    init(_ refusal: ByteBuffer) { self.refusal = refusal }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(refusal)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    /// What the client sends meanwhile is dropped.
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}

/// Open connections by client address, for `HTTPLimits.maxConnectionsPerClient`.
final class ClientConnectionCount: Sendable {
    private let open = Mutex<[String: Int]>([:])

    /// Counts a new connection from `client`; false (and not counted) when it already has `limit`.
    func admit(_ client: String, limit: Int) -> Bool {
        open.withLock { open in
            let count = open[client, default: 0]
            if limit > 0 && count >= limit { return false }
            open[client] = count + 1
            return true
        }
    }

    func release(_ client: String) {
        open.withLock { open in
            let count = (open[client] ?? 1) - 1
            open[client] = count > 0 ? count : nil
        }
    }
}

/// The first handler of a connection: it sees the raw bytes, so it knows when a request head
/// starts arriving, and keeps the connection's one deadline: the idle timeout while it waits for
/// a request, the head timeout while a head arrives, the body timeout while its body arrives, none
/// while the request is answered.
///
/// Moving the deadline costs no timer: one check is scheduled at most a head timeout ahead (the
/// shortest deadline), and when it runs it either ends the connection or schedules the next one.
final class ConnectionDeadlineHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Phase { case waiting, receivingHead, receivingBody, inRequest }

    private let limits: HTTPLimits
    private var phase = Phase.waiting
    /// When the current phase ends the connection; nil while a request is answered.
    private var deadline: NIODeadline?
    private var check: Scheduled<Void>?
    private var context: ChannelHandlerContext?

    init(limits: HTTPLimits) { self.limits = limits }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        enter(.waiting, limits.idleTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if phase == .waiting { enter(.receivingHead, limits.requestHeadersTimeout) }
        context.fireChannelRead(data)
    }

    /// The request handler has a complete head: its body has the body timeout.
    func headReceived() { enter(.receivingBody, limits.requestBodyTimeout) }

    /// The request handler has the whole request: no deadline until its response is written.
    func requestReceived() {
        phase = .inRequest
        deadline = nil
    }

    /// The response is written and the connection stays open: wait for the next request.
    func responseFinished() { enter(.waiting, limits.idleTimeout) }

    private func enter(_ next: Phase, _ timeout: TimeAmount) {
        phase = next
        deadline = .now() + timeout
        if check == nil { scheduleCheck() }
    }

    private func scheduleCheck() {
        guard let context, let deadline else { return }
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        check = loop.scheduleTask(deadline: min(deadline, .now() + limits.requestHeadersTimeout)) { bound.value.runCheck() }
    }

    private func runCheck() {
        check = nil
        guard let context, let deadline else { return }
        guard NIODeadline.now() >= deadline else { return scheduleCheck() }
        switch phase {
        case .receivingHead:
            refuse(RawRefusal.bytes(.requestTimeout, "request head not complete within the request headers timeout"), context: context)
        case .receivingBody:
            refuse(RawRefusal.bytes(.requestTimeout, "request body not complete within the request body timeout"), context: context)
        case .waiting:
            context.close(promise: nil)
        case .inRequest:
            break
        }
    }

    private func refuse(_ response: ByteBuffer, context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(response)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

/// Answers a request the HTTP decoder refused: 431 when its head broke a header limit, 400 for
/// any other framing error, both closing the connection (unless a response had already started).
final class ProtocolErrorResponder: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var responseInProgress = false

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else { return context.fireErrorCaught(error) }
        if !responseInProgress {
            let (status, message): (HTTPResponseStatus, String) = parserError == .headerOverflow
                ? (.requestHeaderFieldsTooLarge, "request header fields too large")
                : (.badRequest, "malformed HTTP request (\(parserError))")
            let body = ByteBuffer(string: message + "\n")
            let headers = HTTPHeaders([("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", String(body.readableBytes)),
                                       ("Connection", "close")])
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200: responseInProgress = true
        case .end: responseInProgress = false
        default: break
        }
        context.write(data, promise: promise)
    }
}
