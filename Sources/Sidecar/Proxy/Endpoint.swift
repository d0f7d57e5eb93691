import NIOCore
import TrellisCore

/// One instance of an upstream service as discovery reports it.
public struct EndpointInfo: Sendable, Equatable {
    public var id: String
    public var host: String
    public var port: Int
    public var weight: Int
    public var tags: [String]
    /// Whether the instance takes mutual TLS (its sidecar's inbound mode is permissive or strict).
    public var mtls: Bool

    /// `host:port`, with IPv6 hosts in brackets; made once, access logs and errors use it per request.
    let address: String

    public init(id: String, host: String, port: Int, weight: Int = 1, tags: [String] = [], mtls: Bool = false) {
        self.id = id
        self.host = host
        self.port = port
        self.weight = max(1, weight)
        self.tags = tags
        self.mtls = mtls
        self.address = HostPort.format(host, port)
    }

}

/// An upstream instance with the live statistics the balancers and outlier detection need.
/// Confined to the data-plane event loop.
final class Endpoint {
    private(set) var info: EndpointInfo
    let pool: ConnectionPool

    var activeRequests = 0
    var totalRequests = 0
    var failures = 0
    /// Smooth weighted round robin state (nginx's algorithm).
    var currentWeight = 0
    var consecutiveErrors = 0
    var ejections = 0
    var ejectedUntil: NIODeadline?

    init(info: EndpointInfo, pool: ConnectionPool) {
        self.info = info
        self.pool = pool
    }

    func update(_ info: EndpointInfo) { self.info = info }

    var weight: Int { info.weight }

    func isEjected(at now: NIODeadline) -> Bool {
        guard let until = ejectedUntil else { return false }
        if until <= now {
            ejectedUntil = nil
            return false
        }
        return true
    }
}

extension Endpoint: AttemptTarget {
    var address: String { info.address }
}
