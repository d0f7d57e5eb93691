import NIOCore
import NIOHTTP1
import NIOPosix
import TrellisCore

/// The result of running a check once.
struct ProbeResult: Sendable {
    let status: HealthStatus
    let output: String
}

/// Runs HTTP and TCP checks over real sockets, with Consul's outcome rules and output texts.
enum Probes {
    /// Longest check output kept, as Consul's default `check_output_max_size`.
    static let outputLimit = 4096

    /// HTTP check: 2xx passing, 429 warning, anything else (or no answer in time) critical.
    static func http(_ d: CheckDefinition, timeout: TimeAmount, on loop: any EventLoop) -> EventLoopFuture<ProbeResult> {
        let method = d.method.isEmpty ? "GET" : d.method.uppercased()
        guard let target = ProbeURL(d.http) else {
            return loop.makeSucceededFuture(ProbeResult(status: .critical, output: "invalid check URL \"\(d.http)\""))
        }
        guard !target.tls else {
            return loop.makeSucceededFuture(ProbeResult(
                status: .critical, output: "HTTP \(method) \(d.http): https checks are not supported by this registry"))
        }
        let promise = loop.makePromise(of: ProbeResult.self)
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: target.requestURI)
        head.headers.add(name: "Host", value: target.hostHeader)
        head.headers.add(name: "User-Agent", value: "Consul Health Check")
        head.headers.add(name: "Accept", value: "text/plain, text/*, */*")
        for (name, values) in d.header { for value in values { head.headers.replaceOrAdd(name: name, value: value) } }
        head.headers.replaceOrAdd(name: "Connection", value: "close")
        let body = ByteBuffer(string: d.body)
        if !d.body.isEmpty || method == "POST" || method == "PUT" {
            head.headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        }
        let prefix = "HTTP \(method) \(d.http)"
        let requestHead = head
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ProbeResponseHandler(prefix: prefix, promise: promise))
                }
            }
        let connected = connect(bootstrap, host: target.host, port: target.port)
        connected.whenComplete { result in
            switch result {
            case .failure(let error):
                promise.succeed(ProbeResult(status: .critical, output: "\(prefix): \(describe(error))"))
            case .success(let channel):
                channel.write(HTTPClientRequestPart.head(requestHead), promise: nil)
                if body.readableBytes > 0 { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
                channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
                // The timer is left to fire rather than cancelled: cancelling is a linear search of the
                // loop's timer heap, which holds every check's next run; firing late is a no-op.
                loop.scheduleTask(in: timeout) {
                    promise.succeed(ProbeResult(status: .critical,
                                                output: "\(prefix): timed out after \(timeout.nanoseconds / 1_000_000)ms"))
                }
                promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
            }
        }
        return promise.futureResult
    }

    /// TCP check: passing when a connection opens in time.
    static func tcp(_ address: String, timeout: TimeAmount, on loop: any EventLoop) -> EventLoopFuture<ProbeResult> {
        guard let (host, port) = splitHostPort(address) else {
            return loop.makeSucceededFuture(ProbeResult(status: .critical, output: "invalid TCP address \"\(address)\""))
        }
        return connect(ClientBootstrap(group: loop).connectTimeout(timeout), host: host, port: port)
            .flatMap { channel in channel.close().map { ProbeResult(status: .passing, output: "TCP connect \(address): Success") } }
            .recover { error in ProbeResult(status: .critical, output: "dial tcp \(address): \(describe(error))") }
    }

    /// Connects without a resolver round trip when the host is an IP literal (the common case for checks).
    static func connect(_ bootstrap: ClientBootstrap, host: String, port: Int) -> EventLoopFuture<any Channel> {
        if let address = try? SocketAddress(ipAddress: host, port: port) { return bootstrap.connect(to: address) }
        return bootstrap.connect(host: host, port: port)
    }

    static func splitHostPort(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    static func describe(_ error: any Error) -> String {
        if let connect = error as? NIOConnectionError, let first = connect.connectionErrors.first {
            return describe(first.error)
        }
        if let io = error as? IOError {
            switch io.errnoCode {
            case 111: return "connect: connection refused"
            case 113: return "connect: no route to host"
            default: return "\(io)"
            }
        }
        if error is ChannelError, case .connectTimeout = error as? ChannelError { return "i/o timeout" }
        return "\(error)"
    }

    /// Output truncated the way Consul reports it.
    static func truncated(_ text: String) -> String {
        let bytes = Array(text.utf8)
        guard bytes.count > outputLimit else { return text }
        return String(decoding: bytes[..<outputLimit], as: UTF8.self)
            + " ... (captured \(outputLimit) of \(bytes.count) bytes)"
    }
}

/// The parts of an `http://` check URL that a request needs.
struct ProbeURL {
    let tls: Bool
    let host: String
    let port: Int
    let requestURI: String
    let hostHeader: String

    init?(_ url: String) {
        let rest: Substring
        if url.hasPrefix("http://") {
            tls = false
            rest = url.dropFirst(7)
        } else if url.hasPrefix("https://") {
            tls = true
            rest = url.dropFirst(8)
        } else {
            return nil
        }
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = String(rest[..<authorityEnd])
        var path = String(rest[authorityEnd...])
        if path.isEmpty { path = "/" } else if path.hasPrefix("?") { path = "/" + path }
        guard !authority.isEmpty else { return nil }
        if let (host, port) = Probes.splitHostPort(authority), !authority.hasSuffix("]") {
            self.host = host
            self.port = port
        } else {
            var host = authority
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            self.host = host
            self.port = tls ? 443 : 80
        }
        requestURI = path
        hostHeader = authority
    }
}

private final class ProbeResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let prefix: String
    private let promise: EventLoopPromise<ProbeResult>
    private var status: HTTPResponseStatus?
    private var body: [UInt8] = []
    private var totalBytes = 0

    init(prefix: String, promise: EventLoopPromise<ProbeResult>) {
        self.prefix = prefix
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
        case .body(let buffer):
            totalBytes += buffer.readableBytes
            let room = Probes.outputLimit - body.count
            if room > 0 { body.append(contentsOf: buffer.readableBytesView.prefix(room)) }
        case .end:
            finish()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if status != nil { finish() } else {
            promise.succeed(ProbeResult(status: .critical, output: "\(prefix): connection closed before a response"))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.succeed(ProbeResult(status: .critical, output: "\(prefix): \(Probes.describe(error))"))
        context.close(promise: nil)
    }

    private func finish() {
        guard let status else { return }
        var text = String(decoding: body, as: UTF8.self)
        if totalBytes > body.count {
            text += " ... (captured \(body.count) of \(totalBytes) bytes)"
        }
        let output = "\(prefix): \(status.code) \(status.reasonPhrase) Output: \(text)"
        let health: HealthStatus = (200..<300).contains(status.code) ? .passing : status.code == 429 ? .warning : .critical
        promise.succeed(ProbeResult(status: health, output: output))
    }
}
