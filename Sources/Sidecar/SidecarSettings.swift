import NIOCore
import Policy

/// How one sidecar is launched (from `trellis sidecar` flags).
public struct SidecarSettings: Sendable {
    public var service: String
    /// Instance id in the registry; derived from service, address and port when nil.
    public var instanceID: String?
    /// Address registered for the instance and where the public and admin listeners bind.
    public var address = "127.0.0.1"
    /// Public (inbound) port; 0 picks a free one.
    public var port: Int
    /// Where the local service listens; picked automatically when the sidecar runs the service.
    public var localPort: Int?
    /// Upstream service names with their local outbound port (0 picks a free one).
    public var upstreams: [(name: String, port: Int)] = []
    public var adminPort = 0
    public var registryHost = "127.0.0.1"
    public var registryPort = 8500
    /// The ACL token the sidecar presents to the registry (`X-Consul-Token`).
    public var registryToken: String?
    public var tags: [String] = []
    public var meta: [String: String] = [:]
    /// Policy from `--policy`; a policy in the registry KV replaces it while present.
    public var filePolicy: SidecarPolicy?
    public var command: [String] = []
    /// Path of the service's own health endpoint (2xx means ready); without it any HTTP answer on `/` does.
    public var healthPath: String?
    public var checkInterval = "2s"
    public var drainTimeout: TimeAmount = .seconds(10)
    /// Client connections: the time allowed for a whole request head once its first byte arrived,
    /// and how long a keep-alive connection may stay idle between requests (Envoy's
    /// `request_headers_timeout` and `idle_timeout`).
    public var connectionTimeouts = ConnectionTimeouts()
    public var accessLog = true
    /// How the inbound listener takes callers: mutual TLS only, both, or plaintext. Calls to
    /// upstreams use mutual TLS wherever the instance takes it, whatever this mode.
    public var mtls = MTLSMode.off
    /// Where to send log lines: nil finds the collector in the registry; `shipLogs` false sends none.
    public var collector: (host: String, port: Int)?
    public var shipLogs = true

    public init(service: String, port: Int) {
        self.service = service
        self.port = port
    }

    /// `UPSTREAM_<NAME>_URL`: the name upper-cased, other characters than letters and digits as `_`.
    public static func environmentName(forUpstream name: String) -> String {
        let upper = name.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" }
        return "UPSTREAM_\(String(upper))_URL"
    }
}
