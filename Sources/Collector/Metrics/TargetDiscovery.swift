import ConsulClient
import NIOHTTP1
import Telemetry
import TrellisCore
import TrellisHTTP

/// An endpoint to scrape and the labels its series get.
public struct ScrapeTarget: Hashable, Sendable {
    public var host: String
    public var port: Int
    public var path: String
    /// `job`, `instance`, `service` and any static extras.
    public var labels: [Label]
    /// Sent as `X-Consul-Token` (the registry's own `/metrics` under ACLs).
    public var token: String?

    public init(host: String, port: Int, path: String, job: String, instance: String, service: String?, extra: [Label] = []) {
        self.host = host
        self.port = port
        self.path = path.hasPrefix("/") ? path : "/" + path
        var labels = [Label("job", job), Label("instance", instance)]
        if let service { labels.append(Label("service", service)) }
        self.labels = labels + extra.filter { label in !labels.contains { $0.name == label.name } }
    }

    public var url: String { "http://\(HostPort.format(host, port))\(path)" }
    var key: String { url + " " + (labels.first?.value ?? "") }
}

/// Finds scrape targets in the registry with blocking queries: every sidecar's admin `/metrics`
/// (Meta `trellis_sidecar_admin_port`), every instance whose Meta has `metrics_path`, and the registry.
public struct TargetDiscovery: Sendable {
    public static let metricsPathMeta = "metrics_path"

    let registry: ConsulClient
    /// The registry's own `/metrics`.
    public let registryTarget: ScrapeTarget
    /// Services never scraped through discovery (the collector itself).
    let ignoredServices: Set<String>

    /// Discovers through the registry at `host:port`.
    public init(registryHost host: String, port: Int, http: HTTPClient, token: String? = nil, ignoredServices: Set<String>) {
        registry = ConsulClient(host: host, port: port, http: http, token: token)
        var target = ScrapeTarget(host: host, port: port, path: "/metrics", job: "trellis-registry",
                                  instance: HostPort.format(host, port), service: "trellis-registry")
        target.token = token
        registryTarget = target
        self.ignoredServices = ignoredServices
    }

    /// Calls `onChange` with the full target list each time the catalog changes.
    public func run(onError: @escaping @Sendable (String) -> Void, onChange: @escaping @Sendable ([ScrapeTarget]) -> Void) async {
        await registry.watch("/v1/catalog/services", onError: onError) { response in
            let names = (try JSON.parse(response.bodyBytes)).objectValue?.pairs.map(\.key) ?? []
            var targets = [registryTarget]
            for name in names where !ignoredServices.contains(name) {
                let answer = try await registry.call(.GET, "/v1/catalog/service/\(URLPath.escape(name))")
                guard answer.status == .ok else { continue }
                for node in try Views.decode([CatalogServiceNode].self, from: answer.bodyBytes) {
                    targets.append(contentsOf: Self.targets(ofCatalogEntry: node, service: name))
                }
            }
            onChange(targets)
        }
    }

    static func targets(ofCatalogEntry node: CatalogServiceNode, service: String) -> [ScrapeTarget] {
        let address = node.reachableAddress.isEmpty ? "127.0.0.1" : node.reachableAddress
        let id = node.serviceID
        var targets: [ScrapeTarget] = []
        if let admin = node.serviceMeta[WellKnownNames.sidecarAdminPortMeta].flatMap(Int.init) {
            targets.append(ScrapeTarget(host: address, port: admin, path: "/metrics", job: "trellis-sidecar", instance: id, service: service))
        }
        if let path = node.serviceMeta[metricsPathMeta], node.servicePort > 0 {
            targets.append(ScrapeTarget(host: address, port: node.servicePort, path: path, job: service, instance: id, service: service))
        }
        return targets
    }
}
