import ConsulClient
import Foundation
import NIOCore
import NIOHTTP1
import TrellisCore
import TrellisHTTP

/// Consul's internal UI endpoints (`/v1/internal/ui/*`) the web UI reads: the service listing with
/// health counts, a service's topology, and the metrics proxy — here to the collector, which holds
/// every sidecar's metrics and logs — plus a read-only window on a sidecar's admin endpoints.
extension ConsulAPI {
    /// `GET /v1/internal/ui/services`: Consul's `ServiceListingSummary` per service, plus the
    /// instance counts by aggregate health the UI sorts by (`InstancesPassing|Warning|Critical`).
    func uiServices(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let dc = identity.datacenter
        return catalogRead(context) { state, visible in
            let proxied = Set(visible.filter { $0.kind == "connect-proxy" }.compactMap(\.connectTarget))
            let byName = Dictionary(grouping: visible.filter { $0.kind != "connect-proxy" }, by: \.name)
            return .array(byName.keys.sorted().map { name in
                var summary = UIServiceSummary(name: name, datacenter: dc, instances: byName[name]!, state: state)
                summary.extra = [("ConnectedWithProxy", .bool(proxied.contains(name))), ("ConnectedWithGateway", .bool(false))]
                return summary.json
            })
        }
    }

    /// `GET /v1/internal/ui/service-topology/:service`: upstreams (declared by the service's
    /// sidecars) and downstreams (services whose sidecars declare it), with the intention decision
    /// for each edge, in Consul's `ServiceTopology` shape.
    func uiServiceTopology(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let name = context.rest
        guard !name.isEmpty else { return badRequest("Missing service name", context) }
        if let refused = refusal(context, .service, name, .read) { return refused }
        let dc = identity.datacenter
        return catalogRead(context, alsoKeys: [WatchKey.intentions]) { state, visible in
            let byName = Dictionary(grouping: visible, by: \.name)
            let upstreams = Set((byName[name] ?? []).flatMap(Self.declaredUpstreams))
            let downstreams = Set(visible.filter { Self.declaredUpstreams($0).contains(name) }.map(\.name))
            func summaries(_ names: Set<String>, edge: (String) -> (String, String)) -> JSON {
                .array(names.sorted().compactMap { other in
                    guard let instances = byName[other] else { return nil }
                    var summary = UIServiceSummary(name: other, datacenter: dc, instances: instances, state: state)
                    let (source, destination) = edge(other)
                    let (allowed, _) = self.authorize(source: source, destination: destination, in: state)
                    let decision = JSONObject([
                        ("DefaultAllow", .bool(self.defaultIntentionAllows)), ("Allowed", .bool(allowed)), ("HasPermissions", .bool(false)),
                        ("ExternalSource", .string("")),
                        ("HasExact", .bool(state.intention(source: source, destination: destination) != nil)),
                    ])
                    summary.extra = [("Source", .string("registration")), ("Intention", .object(decision))]
                    return summary.json
                })
            }
            return .object(JSONObject([
                ("Protocol", .string("http")), ("TransparentProxy", .bool(false)),
                ("Upstreams", summaries(upstreams) { (name, $0) }),
                ("Downstreams", summaries(downstreams) { ($0, name) }),
                ("FilteredByACLs", .bool(visible.count != state.instanceCount)),
            ]))
        }
    }

    /// A blocking read over every instance the token may see, woken by any change of services or
    /// checks (and of `alsoKeys`); its index is the newest of theirs.
    private func catalogRead(_ context: Context, alsoKeys: [String] = [],
                             _ build: @escaping @Sendable (borrowing RegistryState, [ServiceInstance]) -> JSON) -> EventLoopFuture<HTTPResponse> {
        let pretty = context.request.query.has("pretty")
        let keys = [WatchKey.services, WatchKey.checks] + alsoKeys
        return BlockingQuery.run(context.request, catalog: catalog, key: keys[0], alsoKeys: Array(keys.dropFirst()),
                                 indexOf: { state in keys.map { state.watchIndex($0) }.max() ?? 1 },
                                 acl: context.acl, on: context.loop, cancellation: context.cancellation) { state in
            context.acl.rendering {
                let visible = state.allInstances.filter { context.acl.visible(.service, $0.name) && context.acl.visible(.node, $0.node) }
                return .json(build(state, visible).serialized(pretty: pretty))
            }
        }
    }

    /// The collector paths the metrics proxy forwards (Consul's `ui_config.metrics_proxy.path_allowlist`).
    static let metricsProxyPaths: Set<String> = ["/federate", "/loki/api/v1/query_range", "/api/v1/targets"]

    /// `GET /v1/internal/ui/metrics-proxy/*`: forwards to a passing `trellis-collector` instance.
    /// As in Consul, the token needs `service:read` and `node:read` on every name.
    func uiMetricsProxy(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let path = "/" + context.rest
        for resource in [ACLResource.service, .node] where !context.authorizer.allowsEvery(resource, .read) {
            return immediate(.text(.forbidden, "Permission denied: token with AccessorID '\(context.authorizer.accessorID)' "
                + "lacks permission '\(resource.rawValue):read' on every \(resource.rawValue), which the metrics proxy needs"), context)
        }
        guard Self.metricsProxyPaths.contains(path) else {
            return immediate(.text(.forbidden, "metrics proxy: path \(path) is not allowed; allowed: "
                + Self.metricsProxyPaths.sorted().joined(separator: ", ")), context)
        }
        let collector = catalog.read { state in
            state.instances(named: WellKnownNames.collectorService).first { instance in
                HealthStatus.aggregate(state.healthEntry(instance)?.checks.map(\.status) ?? []) == .passing
            }.map { (Self.address(of: $0, in: state), $0.port) }
        }
        guard let (host, port) = collector else {
            return immediate(.text(.serviceUnavailable, "no passing \(WellKnownNames.collectorService) is registered: "
                + "metrics and logs come from a collector"), context)
        }
        return forward(to: host, port: port, path: path, query: context.request.query, context)
    }

    /// `GET /v1/internal/ui/sidecar/:id/(config|clusters|metrics)`: a sidecar's admin answer, found
    /// by the instance it registered; the token needs `service:read` on the instance's service.
    func uiSidecar(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        guard let slash = context.rest.lastIndex(of: "/") else {
            return badRequest("expected /v1/internal/ui/sidecar/<instance id>/<config|clusters|metrics>", context)
        }
        let id = String(context.rest[..<slash]), page = String(context.rest[context.rest.index(after: slash)...])
        guard ["config", "clusters", "metrics"].contains(page) else {
            return badRequest("unknown sidecar page \(JSON.string(page).text): config, clusters or metrics", context)
        }
        let found = catalog.read { state in
            state.allInstances.first { $0.id == id }.map {
                ($0.name, Self.address(of: $0, in: state), $0.meta[WellKnownNames.sidecarAdminPortMeta])
            }
        }
        guard let (service, host, admin) = found else { return immediate(.text(.notFound, "unknown service ID: \(id)"), context) }
        if let refused = refusal(context, .service, service, .read) { return refused }
        guard let admin, let port = Int(admin) else {
            return immediate(.text(.notFound, "instance \(id) has no sidecar (no \(WellKnownNames.sidecarAdminPortMeta) in its Meta)"), context)
        }
        return forward(to: host, port: port, path: "/" + page, query: QueryParameters(""), context)
    }

    /// A GET to `host:port`, answered with its status, content type and body; 502 when it fails.
    private func forward(to host: String, port: Int, path: String, query: QueryParameters,
                         _ context: Context) -> EventLoopFuture<HTTPResponse> {
        let forwarded = query.items.filter { $0.name != "token" }
            .map { URLPath.escapeQueryValue($0.name) + "=" + URLPath.escapeQueryValue($0.value) }.joined(separator: "&")
        let target = forwarded.isEmpty ? path : path + "?" + forwarded
        let client = { var client = HTTPClient(group: context.loop); client.maxBodySize = Self.proxiedBodyLimit; return client }()
        let promise = context.loop.makePromise(of: HTTPResponse.self)
        promise.completeWithTask {
            do {
                let answer = try await client.send(.GET, host: host, port: port, path: target, timeout: .seconds(10))
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: answer.headers.first(name: "Content-Type") ?? "text/plain; charset=utf-8")
                return HTTPResponse(status: answer.status, headers: headers, body: answer.body)
            } catch {
                return .text(.badGateway, "\(HostPort.format(host, port)) did not answer: \(error)")
            }
        }
        return promise.futureResult
    }

    /// Largest answer the proxies pass on.
    static let proxiedBodyLimit = 16 << 20

    /// Services a sidecar declared it calls (`trellis_upstreams` in its Meta).
    static func declaredUpstreams(_ instance: ServiceInstance) -> [String] {
        (instance.meta[WellKnownNames.sidecarUpstreamsMeta] ?? "").split(separator: ",").map(String.init)
    }

    /// Where an instance answers: its own address, else its node's.
    static func address(of instance: ServiceInstance, in state: borrowing RegistryState) -> String {
        instance.address.isEmpty ? (state.node(instance.node)?.address ?? "") : instance.address
    }
}

/// One service as Consul's UI endpoints summarise it (`ServiceSummary`), from its instances.
struct UIServiceSummary {
    let name: String
    let datacenter: String
    let instances: [ServiceInstance]
    var kind = ""
    var tags: [String] = []
    var nodes: [String] = []
    var externalSources: [String] = []
    var checks: [HealthStatus: Int] = [:]
    var instanceHealth: [HealthStatus: Int] = [:]
    /// Fields of the endpoint's own shape, appended after the summary's.
    var extra: [(String, JSON)] = []

    init(name: String, datacenter: String, instances: [ServiceInstance], state: borrowing RegistryState) {
        self.name = name
        self.datacenter = datacenter
        self.instances = instances
        var seenChecks = Set<String>()
        for instance in instances.sorted(by: { ($0.node, $0.id) < ($1.node, $1.id) }) {
            if kind.isEmpty { kind = instance.kind }
            for tag in instance.tags where !tags.contains(tag) { tags.append(tag) }
            if !nodes.contains(instance.node) { nodes.append(instance.node) }
            if let source = instance.meta["external-source"], !externalSources.contains(source) { externalSources.append(source) }
            let entryChecks = state.healthEntry(instance)?.checks ?? []
            for check in entryChecks where seenChecks.insert(check.node + "\u{0}" + check.checkID).inserted {
                checks[check.status == .maintenance ? .critical : check.status, default: 0] += 1
            }
            let aggregate = HealthStatus.aggregate(entryChecks.map(\.status))
            instanceHealth[aggregate == .maintenance ? .critical : aggregate, default: 0] += 1
        }
    }

    var json: JSON {
        var fields: [(String, JSON)] = kind.isEmpty ? [] : [("Kind", .string(kind))]
        fields += [
            ("Name", .string(name)), ("Datacenter", .string(datacenter)), ("Tags", .strings(tags)), ("Nodes", .strings(nodes)),
            ("ExternalSources", .strings(externalSources)), ("InstanceCount", .int(Int64(instances.count))),
            ("ChecksPassing", .int(Int64(checks[.passing] ?? 0))), ("ChecksWarning", .int(Int64(checks[.warning] ?? 0))),
            ("ChecksCritical", .int(Int64(checks[.critical] ?? 0))), ("GatewayConfig", .object(JSONObject())),
            ("TransparentProxy", .bool(false)), ("ConnectNative", .bool(false)),
            ("InstancesPassing", .int(Int64(instanceHealth[.passing] ?? 0))),
            ("InstancesWarning", .int(Int64(instanceHealth[.warning] ?? 0))),
            ("InstancesCritical", .int(Int64(instanceHealth[.critical] ?? 0))),
        ]
        return .object(JSONObject(fields + extra))
    }
}
