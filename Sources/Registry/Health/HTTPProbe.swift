import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import TrellisCore
import TrellisHTTP

/// HTTP checks over keep-alive connections that are reused from one run of a check to the next.
///
/// Opening and closing a TCP connection per probe costs more than the probe itself at thousands of
/// checks; a reused connection costs one write and one read. Confined to the checker's event loop.
final class HTTPProbe: @unchecked Sendable {
    private static let maxIdlePerTarget = 8
    private static let maxIdleTotal = 4096
    private static let maxIdleTime: TimeAmount = .minutes(2)

    private let loop: any EventLoop
    private var idle: [String: [(channel: any Channel, since: NIODeadline)]] = [:]
    private var idleCount = 0

    init(loop: any EventLoop) { self.loop = loop }

    /// A check's request, built once when the check is adopted and sent on every run.
    enum Prepared: Sendable {
        case invalid(ProbeResult)
        case ready(ProbeURL, ProbeRequest)
    }

    /// Builds the request of an HTTP check definition.
    static func prepare(_ d: CheckDefinition, timeout: TimeAmount) -> Prepared {
        let method = d.method.isEmpty ? "GET" : d.method.uppercased()
        let prefix = "HTTP \(method) \(d.http)"
        guard let target = ProbeURL(d.http) else {
            return .invalid(ProbeResult(status: .critical, output: "invalid check URL \"\(d.http)\""))
        }
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: target.requestURI)
        head.headers.add(name: "Host", value: target.hostHeader)
        head.headers.add(name: "User-Agent", value: "Consul Health Check")
        head.headers.add(name: "Accept", value: "text/plain, text/*, */*")
        for (name, values) in d.header { for value in values { head.headers.replaceOrAdd(name: name, value: value) } }
        let body = ByteBuffer(string: d.body)
        if !d.body.isEmpty || method == "POST" || method == "PUT" {
            head.headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        }
        return .ready(target, ProbeRequest(head: head, body: body, prefix: prefix, timeout: timeout,
                                           skipVerify: d.tlsSkipVerify))
    }

    /// Runs one HTTP check: 2xx passing, 429 warning, anything else (or no answer in time) critical.
    func run(_ prepared: Prepared) -> EventLoopFuture<ProbeResult> {
        switch prepared {
        case .invalid(let result): loop.makeSucceededFuture(result)
        case .ready(let target, let request): attempt(request, target: target, reuse: true)
        }
    }

    /// Closes idle connections unused for a while (their checks may be gone).
    func pruneIdle() {
        let cutoff = NIODeadline.now() - Self.maxIdleTime
        for (key, channels) in idle {
            guard channels.contains(where: { $0.since <= cutoff }) else { continue }
            let keep = channels.filter { $0.since > cutoff }
            channels.filter { $0.since <= cutoff }.forEach { $0.channel.close(promise: nil) }
            idleCount -= channels.count - keep.count
            idle[key] = keep.isEmpty ? nil : keep
        }
    }

    private func attempt(_ request: ProbeRequest, target: ProbeURL, reuse: Bool) -> EventLoopFuture<ProbeResult> {
        let key = "\(target.tls ? "https" : "http")\(request.skipVerify ? "-insecure" : "")://\(target.host):\(target.port)"
        let reused = reuse ? takeIdle(key) : nil
        let channel: EventLoopFuture<any Channel> = reused.map { loop.makeSucceededFuture($0) }
            ?? connect(target, request.timeout, skipVerify: request.skipVerify)
        return channel.assumeIsolated().flatMap { channel -> EventLoopFuture<ProbeResult> in
            guard let handler = try? channel.pipeline.syncOperations.handler(type: ProbeResponseHandler.self) else {
                channel.close(promise: nil)
                return self.loop.makeSucceededFuture(ProbeResult(status: .critical, output: "\(request.prefix): connection unusable"))
            }
            let answer = handler.begin()
            channel.write(HTTPClientRequestPart.head(request.head), promise: nil)
            if request.body.readableBytes > 0 { channel.write(HTTPClientRequestPart.body(.byteBuffer(request.body)), promise: nil) }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            // Left to fire rather than cancelled: cancelling searches the loop's whole timer heap.
            self.loop.assumeIsolated().scheduleTask(in: request.timeout) { handler.expire(answer) }
            return answer.futureResult.assumeIsolated().flatMap { outcome -> EventLoopFuture<ProbeResult> in
                switch outcome {
                case .answered(let result, let keepAlive):
                    if keepAlive && channel.isActive { self.keepIdle(key, channel) } else { channel.close(promise: nil) }
                    return self.loop.makeSucceededFuture(ProbeResult(status: result.status, output: "\(request.prefix): \(result.output)"))
                case .closedBeforeResponse where reused != nil:
                    // The target closed the idle connection just as it was reused: once more, fresh.
                    return self.attempt(request, target: target, reuse: false)
                case .closedBeforeResponse:
                    return self.loop.makeSucceededFuture(ProbeResult(status: .critical,
                                                                     output: "\(request.prefix): connection closed before a response"))
                case .failed(let reason):
                    channel.close(promise: nil)
                    return self.loop.makeSucceededFuture(ProbeResult(status: .critical, output: "\(request.prefix): \(reason)"))
                case .timedOut:
                    channel.close(promise: nil)
                    let millis = request.timeout.nanoseconds / 1_000_000
                    return self.loop.makeSucceededFuture(ProbeResult(status: .critical,
                                                                     output: "\(request.prefix): timed out after \(millis)ms"))
                }
            }.nonisolated()
        }.nonisolated().recover { error in
            ProbeResult(status: .critical, output: "\(request.prefix): \(Probes.describe(error))")
        }
    }

    private func connect(_ target: ProbeURL, _ timeout: TimeAmount, skipVerify: Bool) -> EventLoopFuture<any Channel> {
        let tls: NIOSSLContext?
        do {
            tls = target.tls ? try tlsContext(skipVerify: skipVerify) : nil
        } catch {
            return loop.makeFailedFuture(error)
        }
        // SNI takes names only; an IP target is verified against the certificate chain alone.
        let serverName = (try? SocketAddress(ipAddress: target.host, port: 0)) == nil ? target.host : nil
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            try NIOSSLClientHandler(context: tls, serverHostname: serverName))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ProbeResponseHandler())
                }
            }
        return Probes.connect(bootstrap, host: target.host, port: target.port)
    }

    private var verifyingContext: NIOSSLContext?
    private var insecureContext: NIOSSLContext?

    /// TLS client contexts, made once: one verifying certificates, one for `TLSSkipVerify` checks.
    private func tlsContext(skipVerify: Bool) throws -> NIOSSLContext {
        if let cached = skipVerify ? insecureContext : verifyingContext { return cached }
        var configuration = TLSConfiguration.makeClientConfiguration()
        if skipVerify { configuration.certificateVerification = .none }
        let context = try NIOSSLContext(configuration: configuration)
        if skipVerify { insecureContext = context } else { verifyingContext = context }
        return context
    }

    private func takeIdle(_ key: String) -> (any Channel)? {
        while var channels = idle[key], let last = channels.popLast() {
            idle[key] = channels.isEmpty ? nil : channels
            idleCount -= 1
            if last.channel.isActive { return last.channel }
        }
        return nil
    }

    private func keepIdle(_ key: String, _ channel: any Channel) {
        var channels = idle[key] ?? []
        guard channels.count < Self.maxIdlePerTarget, idleCount < Self.maxIdleTotal else { return channel.close(promise: nil) }
        channels.append((channel, .now()))
        idleCount += 1
        idle[key] = channels
    }
}

/// What one probe needs to send and report.
struct ProbeRequest: Sendable {
    let head: HTTPRequestHead
    let body: ByteBuffer
    let prefix: String
    let timeout: TimeAmount
    let skipVerify: Bool
}

/// How one request on a probe connection ended.
enum ProbeAnswer: Sendable {
    case answered(ProbeResult, keepAlive: Bool)
    case closedBeforeResponse
    case failed(String)
    case timedOut
}

/// Reads the responses of one probe connection, one request at a time.
final class ProbeResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private var pending: EventLoopPromise<ProbeAnswer>?
    private var head: HTTPResponseHead?
    private var body: [UInt8] = []
    private var totalBytes = 0
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Starts waiting for the answer to the request about to be written.
    func begin() -> EventLoopPromise<ProbeAnswer> {
        let promise = context!.eventLoop.makePromise(of: ProbeAnswer.self)
        pending = promise
        head = nil
        body = []
        totalBytes = 0
        return promise
    }

    /// Ends `answer` as timed out if it is still the one pending.
    func expire(_ answer: EventLoopPromise<ProbeAnswer>) {
        guard let pending, pending.futureResult === answer.futureResult else { return }
        self.pending = nil
        pending.succeed(.timedOut)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body(let buffer):
            totalBytes += buffer.readableBytes
            let room = Probes.outputLimit - body.count
            if room > 0 { body.append(contentsOf: buffer.readableBytesView.prefix(room)) }
        case .end:
            guard let head, let pending else { return }
            self.pending = nil
            let text = Probes.captured(body, of: totalBytes)
            let code = head.status.code
            let status: HealthStatus = (200..<300).contains(code) ? .passing : code == 429 ? .warning : .critical
            let result = ProbeResult(status: status, output: "\(code) \(head.status.reasonPhrase) Output: \(text)")
            pending.succeed(.answered(result, keepAlive: head.isKeepAlive))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let pending {
            self.pending = nil
            pending.succeed(head == nil ? .closedBeforeResponse : .failed("connection closed mid-response"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let pending {
            self.pending = nil
            pending.succeed(.failed(Probes.describe(error)))
        }
        context.close(promise: nil)
    }
}
