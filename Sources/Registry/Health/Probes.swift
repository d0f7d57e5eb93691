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
        if case .connectTimeout? = error as? ChannelError { return "i/o timeout" }
        return "\(error)"
    }

    /// Output truncated the way Consul reports it.
    static func truncated(_ text: String) -> String {
        let bytes = Array(text.utf8)
        return captured(bytes.prefix(outputLimit), of: bytes.count)
    }

    /// The `kept` bytes of an output `total` bytes long, marked when cut short.
    static func captured(_ kept: some Collection<UInt8>, of total: Int) -> String {
        let text = String(decoding: kept, as: UTF8.self)
        return total > kept.count ? text + " ... (captured \(kept.count) of \(total) bytes)" : text
    }
}

/// The parts of an `http://` check URL that a request needs.
struct ProbeURL: Sendable {
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
