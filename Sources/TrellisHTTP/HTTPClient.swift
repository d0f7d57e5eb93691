#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOHTTP1
import NIOPosix
import TrellisCore

/// A small HTTP/1.1 client on SwiftNIO for control-plane calls (registry API, scrapes, pushes).
///
/// One connection per call: these calls are rare next to the data plane, and a fresh connection
/// keeps cancellation simple — cancelling the task closes the socket, which ends a blocking query.
public struct HTTPClient: Sendable {
    public struct Response: Sendable {
        public var status: HTTPResponseStatus
        public var headers: HTTPHeaders
        public var body: ByteBuffer

        public var bodyBytes: [UInt8] { Array(body.readableBytesView) }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    private let group: any EventLoopGroup
    /// Largest response body accepted.
    public var maxBodySize = 64 << 20

    public init(group: any EventLoopGroup) { self.group = group }

    /// Sends one request to `host:port` and returns the whole response.
    /// - Parameter timeout: for the whole exchange, connecting included.
    public func send(_ method: HTTPMethod, host: String, port: Int, path: String,
                     headers: HTTPHeaders = [:], body: ByteBuffer? = nil,
                     timeout: TimeAmount) async throws -> Response {
        let maxBody = maxBodySize
        return try await exchange(method, host: host, port: port, path: path, headers: headers, body: body,
                                  timeout: timeout) { ResponseCollector(promise: $0, maxBodySize: maxBody) }
    }

    /// Sends one request and hands each piece of the response body to `onChunk` as it arrives, for
    /// responses that stream without end (watches); returns the response head once the server ends it.
    /// An error thrown by `onChunk`, or cancelling the task, closes the connection and is thrown here.
    /// - Parameter connectTimeout: for connecting only; the response may last as long as the server likes.
    public func stream(_ method: HTTPMethod, host: String, port: Int, path: String,
                       headers: HTTPHeaders = [:], body: ByteBuffer? = nil, connectTimeout: TimeAmount,
                       onChunk: @escaping @Sendable (ByteBuffer) throws -> Void) async throws -> HTTPResponseHead {
        try await exchange(method, host: host, port: port, path: path, headers: headers, body: body,
                           timeout: nil, connectTimeout: connectTimeout) { BodyStreamer(promise: $0, onChunk: onChunk) }
    }

    /// One request on a fresh connection; `makeHandler` reads the response and completes the promise.
    private func exchange<Result: Sendable, Handler: ChannelInboundHandler>(
        _ method: HTTPMethod, host: String, port: Int, path: String, headers: HTTPHeaders, body: ByteBuffer?,
        timeout: TimeAmount?, connectTimeout: TimeAmount? = nil,
        makeHandler: @escaping @Sendable (EventLoopPromise<Result>) -> Handler
    ) async throws -> Result where Handler.InboundIn == HTTPClientResponsePart {
        let loop = group.next()
        let promise = loop.makePromise(of: Result.self)
        let request = "\(method) http://\(HostPort.format(host, port))\(path)"
        let connect = ClientBootstrap(group: loop)
            .connectTimeout(connectTimeout ?? min(timeout ?? .seconds(10), .seconds(10)))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(makeHandler(promise))
                }
            }
            .connect(host: host, port: port)
        let deadline = timeout.map { timeout in
            loop.scheduleTask(in: timeout) {
                promise.fail(Failure(description: "\(request): no answer within \(timeout)"))
            }
        }
        connect.whenFailure { error in
            promise.fail(Failure(description: "\(request): \(Self.describe(error))"))
        }
        connect.whenSuccess { channel in
            var head = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)
            head.headers.replaceOrAdd(name: "Host", value: "\(host):\(port)")
            head.headers.replaceOrAdd(name: "Connection", value: "close")
            head.headers.replaceOrAdd(name: "Content-Length", value: String(body?.readableBytes ?? 0))
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if let body, body.readableBytes > 0 {
                channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
            }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        promise.futureResult.whenComplete { _ in
            deadline?.cancel()
            connect.whenSuccess { $0.close(promise: nil) }
        }
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            promise.fail(CancellationError())
        }
    }
}

extension HTTPClient {
    /// A connect or socket error in a few words: "connection refused", "timed out after 1 s".
    public static func describe(_ error: any Error) -> String {
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)).lowercased() }
        if case ChannelError.connectTimeout(let t)? = error as? ChannelError { return "timed out after \(t)" }
        if let connect = error as? NIOConnectionError, let first = connect.connectionErrors.first {
            return describe(first.error)
        }
        return "\(error)"
    }
}

/// Reads one response and completes a promise with it; a dropped connection or an error fails it.
private protocol ResponseReader: ChannelInboundHandler where InboundIn == HTTPClientResponsePart {
    func fail(_ error: any Error)
}

extension ResponseReader {
    func channelInactive(context: ChannelHandlerContext) {
        fail(HTTPClient.Failure(description: "connection closed before the response was complete"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(HTTPClient.Failure(description: HTTPClient.describe(error)))
        context.close(promise: nil)
    }
}

/// Gathers one response and completes the promise with it.
private final class ResponseCollector: ResponseReader {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<HTTPClient.Response>
    private let maxBodySize: Int
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()

    init(promise: EventLoopPromise<HTTPClient.Response>, maxBodySize: Int) {
        self.promise = promise
        self.maxBodySize = maxBodySize
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body(var chunk):
            if body.readableBytes + chunk.readableBytes > maxBodySize {
                promise.fail(HTTPClient.Failure(description: "response body larger than \(maxBodySize) bytes"))
                context.close(promise: nil)
            } else {
                body.writeBuffer(&chunk)
            }
        case .end:
            if let head {
                promise.succeed(HTTPClient.Response(status: head.status, headers: head.headers, body: body))
            }
            context.close(promise: nil)
        }
    }

    func fail(_ error: any Error) { promise.fail(error) }
}

/// Passes each body chunk on as it arrives and completes with the head when the response ends.
private final class BodyStreamer: ResponseReader {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<HTTPResponseHead>
    private let onChunk: @Sendable (ByteBuffer) throws -> Void
    private var head: HTTPResponseHead?

    init(promise: EventLoopPromise<HTTPResponseHead>, onChunk: @escaping @Sendable (ByteBuffer) throws -> Void) {
        self.promise = promise
        self.onChunk = onChunk
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body(let chunk):
            do {
                try onChunk(chunk)
            } catch {
                promise.fail(error)
                context.close(promise: nil)
            }
        case .end:
            if let head { promise.succeed(head) }
            context.close(promise: nil)
        }
    }

    func fail(_ error: any Error) { promise.fail(error) }
}
