import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Telemetry
import TrellisCore
import TrellisHTTP

/// Who this registry is, as its Consul API reports it.
public struct AgentIdentity: Sendable {
    public var nodeName: String
    public var nodeID: String
    public var datacenter: String
    public var address: String
    public var httpPort: Int
    /// Metadata of the registry's own node, besides Consul's `consul-*` keys.
    public var nodeMeta: [String: String] = [:]
    /// Consul's `enable_script_checks`: whether registrations may carry checks with `Args`.
    public var enableScriptChecks = false
    /// Consul's `default_intention_policy`: what a connection no intention matches gets; nil
    /// leaves it to the ACL default (allow while ACLs are off).
    public var defaultIntentionPolicy: IntentionAction?
    /// The Consul API version whose behaviour the registry follows.
    public static let consulVersion = "1.20.0"
    public static let trellisVersion = "0.1.0"
    /// Reported as Consul reports its build date (`/v1/agent/self`, `/v1/agent/version`).
    public static let buildDate = "2026-01-01T00:00:00Z"
    /// Consul's server RPC port, which clients see in the `consul` service and leader address.
    public static let serverPort = 8300
    /// Consul's Serf LAN and WAN ports, which the registry reports (it runs no gossip).
    public static let serfLANPort = 8301
    public static let serfWANPort = 8302

    /// The registry node's metadata: `configured` (`node_meta`) plus the keys Consul's agent sets.
    public static func nodeMeta(_ configured: [String: String]) -> [String: String] {
        configured.merging(["consul-network-segment": "", "consul-version": consulVersion]) { $1 }
    }

    public var leaderAddress: String { "\(address):\(Self.serverPort)" }
}

/// The registry's HTTP API: Consul's v1 endpoints plus `/metrics`.
public final class ConsulAPI: HTTPResponder {
    let catalog: Catalog
    let identity: AgentIdentity
    let checker: HealthChecker
    let metrics: RegistryMetrics
    let logger: Logger
    /// The registry's data directory, whose disk `/v1/agent/host` reports.
    let dataDirectory: String
    /// Starts the registry's graceful shutdown (`PUT /v1/agent/leave`).
    let onLeave: @Sendable () -> Void
    /// The user events this registry received (`/v1/event/*`).
    let events = UserEvents()
    /// When the API was created, for autopilot's `StableSince`.
    let startedAt = Date()
    /// The log level and its listeners (`/v1/agent/monitor`, `/v1/agent/reload`).
    let logControl: LogControl
    /// Reads what `/v1/agent/reload` applies.
    let reload: @Sendable () throws -> ReloadableSettings
    /// The leaf certificates handed to services (`/v1/agent/connect/ca/leaf/:service`).
    let leafCache: LeafCache
    /// Resolves each request's token (ACL/).
    let aclResolver: ACLResolver

    public init(catalog: Catalog, identity: AgentIdentity, checker: HealthChecker, metrics: RegistryMetrics, logger: Logger,
                dataDirectory: String, acl: ACLSettings = ACLSettings(), logControl: LogControl,
                reload: @escaping @Sendable () throws -> ReloadableSettings, onLeave: @escaping @Sendable () -> Void) {
        self.logControl = logControl
        self.reload = reload
        self.catalog = catalog
        self.identity = identity
        self.checker = checker
        self.metrics = metrics
        self.logger = logger
        self.dataDirectory = dataDirectory
        self.onLeave = onLeave
        self.leafCache = LeafCache(datacenter: identity.datacenter)
        aclResolver = ACLResolver(settings: acl, datacenter: identity.datacenter)
    }

    /// A routed request: the handler and the endpoint label its metrics are recorded under.
    struct Context {
        let request: HTTPRequest
        let loop: any EventLoop
        let cancellation: CancellationSignal
        /// Path segments after the endpoint's fixed prefix, rejoined (IDs may contain `/`).
        let rest: String
        /// The request's token and what it may do.
        let acl: RequestACL

        var authorizer: ACLAuthorizer { acl.authorizer }
    }

    public func respond(to request: HTTPRequest, on loop: any EventLoop, cancellation: CancellationSignal) -> EventLoopFuture<HTTPResponse> {
        let started = NIODeadline.now()
        let (endpoint, routed) = route(request, loop: loop, cancellation: cancellation)
        let future = routed.flatMap { response in self.afterDurable(response, on: loop) }
        return future.map { response in
            let seconds = Double((NIODeadline.now() - started).nanoseconds) / 1e9
            self.metrics.recordRequest(endpoint: endpoint, method: request.method.rawValue,
                                       code: Int(response.status.code), seconds: seconds)
            return response
        }
    }

    /// `response` once the catalog data behind its `X-Consul-Index` is on disk. Indexes beyond the
    /// catalog's own (user events fold their IDs into theirs) are not the catalog's and pass.
    private func afterDurable(_ response: HTTPResponse, on loop: any EventLoop) -> EventLoopFuture<HTTPResponse> {
        guard let index = response.headers.first(name: "X-Consul-Index").flatMap(UInt64.init), index > catalog.durable.current,
              index <= catalog.read({ $0.index }) else {
            return loop.makeSucceededFuture(response)
        }
        let promise = loop.makePromise(of: HTTPResponse.self)
        catalog.durable.whenDurable(index) { promise.succeed(response) }
        return promise.futureResult
    }

    private typealias Handler = @Sendable (ConsulAPI) -> (Context) -> EventLoopFuture<HTTPResponse>

    /// Routes by longest matching prefix; `:rest` endpoints take the remainder of the path.
    private static let routes: [(method: [HTTPMethod], prefix: String, takesRest: Bool, handler: Handler)] = [
        ([.GET], "/v1/agent/services", false, { $0.agentServices }),
        ([.PUT, .POST], "/v1/agent/service/register", false, { $0.agentRegisterService }),
        ([.PUT, .POST], "/v1/agent/service/deregister/", true, { $0.agentDeregisterService }),
        ([.PUT, .POST], "/v1/agent/service/maintenance/", true, { $0.agentServiceMaintenance }),
        ([.GET], "/v1/agent/service/", true, { $0.agentService }),
        ([.GET], "/v1/agent/checks", false, { $0.agentChecks }),
        ([.PUT, .POST], "/v1/agent/check/register", false, { $0.agentRegisterCheck }),
        ([.PUT, .POST], "/v1/agent/check/deregister/", true, { $0.agentDeregisterCheck }),
        ([.PUT, .POST], "/v1/agent/check/pass/", true, { api in { api.agentCheckTTL($0, .passing) } }),
        ([.PUT, .POST], "/v1/agent/check/warn/", true, { api in { api.agentCheckTTL($0, .warning) } }),
        ([.PUT, .POST], "/v1/agent/check/fail/", true, { api in { api.agentCheckTTL($0, .critical) } }),
        ([.PUT, .POST], "/v1/agent/check/update/", true, { $0.agentCheckUpdate }),
        ([.GET], "/v1/agent/self", false, { $0.agentSelf }),
        ([.GET], "/v1/agent/members", false, { $0.agentMembers }),
        ([.GET], "/v1/agent/health/service/id/", true, { $0.agentHealthByID }),
        ([.GET], "/v1/agent/health/service/name/", true, { $0.agentHealthByName }),
        ([.PUT], "/v1/agent/maintenance", false, { $0.agentNodeMaintenance }),
        ([.PUT], "/v1/agent/leave", false, { $0.agentLeave }),
        ([.PUT], "/v1/agent/join/", true, { $0.agentJoin }),
        ([.PUT], "/v1/agent/force-leave/", true, { $0.agentForceLeave }),
        ([.PUT], "/v1/agent/token/", true, { $0.agentToken }),
        ([.GET], "/v1/agent/host", false, { $0.agentHost }),
        ([.GET], "/v1/agent/version", false, { $0.agentVersion }),
        ([.GET], "/v1/agent/metrics", false, { $0.agentMetrics }),
        ([.GET], "/v1/agent/monitor", false, { $0.agentMonitor }),
        ([.PUT], "/v1/agent/reload", false, { $0.agentReload }),
        ([.POST], "/v1/agent/connect/authorize", false, { $0.agentConnectAuthorize }),
        ([.GET], "/v1/agent/connect/ca/roots", false, { $0.caRoots }),
        ([.GET], "/v1/agent/connect/ca/leaf/", true, { $0.agentLeaf }),
        ([.GET], "/v1/connect/ca/roots", false, { $0.caRoots }),
        ([.GET, .PUT], "/v1/connect/ca/configuration", false, { $0.caConfiguration }),
        ([.GET, .POST], "/v1/connect/intentions", false, { $0.intentions }),
        ([.GET, .PUT, .DELETE], "/v1/connect/intentions/exact", false, { $0.intentionExact }),
        ([.GET], "/v1/connect/intentions/match", false, { $0.intentionMatch }),
        ([.GET], "/v1/connect/intentions/check", false, { $0.intentionCheck }),
        ([.GET, .PUT, .DELETE], "/v1/connect/intentions/", true, { $0.intentionByID }),
        ([.PUT], "/v1/acl/bootstrap", false, { $0.aclBootstrap }),
        ([.GET], "/v1/acl/tokens", false, { $0.aclTokenList }),
        ([.PUT], "/v1/acl/token", false, { $0.aclTokenCreate }),
        ([.GET, .PUT, .DELETE], "/v1/acl/token/", true, { $0.aclToken }),
        ([.GET], "/v1/acl/policies", false, { $0.aclPolicyList }),
        ([.PUT], "/v1/acl/policy", false, { $0.aclPolicy }),
        ([.GET, .PUT, .DELETE], "/v1/acl/policy/", true, { $0.aclPolicy }),
        ([.GET], "/v1/acl/roles", false, { $0.aclRoleList }),
        ([.PUT], "/v1/acl/role", false, { $0.aclRole }),
        ([.GET, .PUT, .DELETE], "/v1/acl/role/", true, { $0.aclRole }),
        ([.GET], "/v1/acl/auth-methods", false, { $0.aclAuthMethodList }),
        ([.PUT], "/v1/acl/auth-method", false, { $0.aclAuthMethod }),
        ([.GET, .PUT, .DELETE], "/v1/acl/auth-method/", true, { $0.aclAuthMethod }),
        ([.GET], "/v1/acl/binding-rules", false, { $0.aclBindingRuleList }),
        ([.PUT], "/v1/acl/binding-rule", false, { $0.aclBindingRule }),
        ([.GET, .PUT, .DELETE], "/v1/acl/binding-rule/", true, { $0.aclBindingRule }),
        ([.GET], "/v1/acl/templated-policies", false, { $0.aclTemplatedPolicyList }),
        ([.GET, .POST], "/v1/acl/templated-policy/", true, { $0.aclTemplatedPolicy }),
        ([.POST], "/v1/acl/login", false, { $0.aclLogin }),
        ([.POST], "/v1/acl/logout", false, { $0.aclLogout }),
        ([.PUT], "/v1/event/fire/", true, { $0.eventFire }),
        ([.GET], "/v1/event/list", false, { $0.eventList }),
        ([.GET], "/v1/coordinate/datacenters", false, { $0.coordinateDatacenters }),
        ([.GET], "/v1/coordinate/nodes", false, { $0.coordinateNodes }),
        ([.GET], "/v1/coordinate/node/", true, { $0.coordinateNode }),
        ([.PUT], "/v1/coordinate/update", false, { $0.coordinateUpdate }),
        ([.GET], "/v1/catalog/services", false, { $0.catalogServices }),
        ([.GET], "/v1/catalog/service/", true, { $0.catalogService }),
        ([.GET], "/v1/catalog/connect/", true, { $0.catalogConnect }),
        ([.GET], "/v1/catalog/gateway-services/", true, { $0.catalogGatewayServices }),
        ([.PUT], "/v1/config", false, { $0.configApply }),
        ([.GET, .POST], "/v1/discovery-chain/", true, { $0.discoveryChain }),
        ([.GET, .DELETE], "/v1/config/", true, { $0.configEntry }),
        ([.GET], "/v1/catalog/nodes", false, { $0.catalogNodes }),
        ([.GET], "/v1/catalog/node/", true, { $0.catalogNode }),
        ([.GET], "/v1/catalog/node-services/", true, { $0.catalogNodeServices }),
        ([.PUT, .POST], "/v1/catalog/register", false, { $0.catalogRegister }),
        ([.PUT, .POST], "/v1/catalog/deregister", false, { $0.catalogDeregister }),
        ([.GET], "/v1/catalog/datacenters", false, { $0.catalogDatacenters }),
        ([.GET], "/v1/health/service/", true, { $0.healthService }),
        ([.GET], "/v1/health/checks/", true, { $0.healthChecks }),
        ([.GET], "/v1/health/state/", true, { $0.healthState }),
        ([.GET], "/v1/health/node/", true, { $0.healthNode }),
        ([.GET], "/v1/health/connect/", true, { $0.healthConnect }),
        ([.GET], "/v1/health/ingress/", true, { $0.healthIngress }),
        ([.GET], "/v1/operator/raft/configuration", false, { $0.operatorRaftConfiguration }),
        ([.DELETE], "/v1/operator/raft/peer", false, { $0.operatorRaftRemovePeer }),
        ([.POST], "/v1/operator/raft/transfer-leader", false, { $0.operatorRaftTransferLeader }),
        ([.GET, .POST, .PUT, .DELETE], "/v1/operator/keyring", false, { $0.operatorKeyring }),
        ([.GET, .PUT], "/v1/operator/autopilot/configuration", false, { $0.operatorAutopilotConfiguration }),
        ([.GET], "/v1/operator/autopilot/health", false, { $0.operatorAutopilotHealth }),
        ([.GET], "/v1/operator/autopilot/state", false, { $0.operatorAutopilotState }),
        ([.GET], "/v1/operator/usage", false, { $0.operatorUsage }),
        ([.GET], "/v1/status/leader", false, { $0.statusLeader }),
        ([.GET], "/v1/status/peers", false, { $0.statusPeers }),
        ([.GET, .PUT, .POST, .DELETE], "/v1/kv/", true, { $0.kv }),
        ([.PUT, .POST], "/v1/session/create", false, { $0.sessionCreate }),
        ([.PUT, .POST], "/v1/session/destroy/", true, { $0.sessionDestroy }),
        ([.PUT, .POST], "/v1/session/renew/", true, { $0.sessionRenew }),
        ([.GET], "/v1/session/info/", true, { $0.sessionInfo }),
        ([.GET], "/v1/session/node/", true, { $0.sessionNode }),
        ([.GET], "/v1/session/list", false, { $0.sessionList }),
        ([.PUT, .POST], "/v1/txn", false, { $0.txn }),
        ([.GET], "/v1/internal/ui/services", false, { $0.uiServices }),
        ([.GET], "/v1/internal/ui/service-topology/", true, { $0.uiServiceTopology }),
        ([.GET], "/v1/internal/ui/metrics-proxy/", true, { $0.uiMetricsProxy }),
        ([.GET], "/v1/internal/ui/sidecar/", true, { $0.uiSidecar }),
        ([.GET], "/metrics", false, { $0.prometheusMetrics }),
        ([.GET], "/ui/", true, { $0.uiAsset }),
        ([.GET], "/ui", false, { $0.uiAsset }),
        ([.GET], "/", false, { $0.index }),
    ]

    private func route(_ request: HTTPRequest, loop: any EventLoop, cancellation: CancellationSignal) -> (String, EventLoopFuture<HTTPResponse>) {
        let path = request.path
        for route in Self.routes {
            let matches = route.takesRest ? path.hasPrefix(route.prefix) : path == route.prefix
            guard matches else { continue }
            let endpoint = route.takesRest ? route.prefix + ":id" : route.prefix
            let method = request.method == .HEAD ? .GET : request.method
            guard route.method.contains(method) else {
                var response = HTTPResponse.text(.methodNotAllowed, "method \(request.method.rawValue) not allowed")
                response.headers.add(name: "Allow", value: route.method.map(\.rawValue).joined(separator: ","))
                return (endpoint, loop.makeSucceededFuture(response))
            }
            if let dc = request.query["dc"], !dc.isEmpty, dc != identity.datacenter {
                return (endpoint, loop.makeSucceededFuture(.text(.internalServerError, "No path to datacenter")))
            }
            let rest = route.takesRest ? String(path.dropFirst(route.prefix.count)) : ""
            guard let acl = requestACL(request, endpoint: route.prefix) else {
                return (endpoint, loop.makeSucceededFuture(.text(.forbidden, "ACL not found")))
            }
            let context = Context(request: request, loop: loop, cancellation: cancellation, rest: rest, acl: acl)
            return (endpoint, route.handler(self)(context))
        }
        return ("unknown", loop.makeSucceededFuture(.text(.notFound, "404 page not found")))
    }

    /// Endpoints answered without resolving a token, as in Consul.
    private static let tokenless: Set<String> = ["/v1/status/leader", "/v1/status/peers", "/v1/acl/bootstrap", "/v1/acl/login",
                                                 "/v1/agent/connect/ca/roots", "/v1/connect/ca/roots", "/", "/ui/", "/ui"]

    /// The request's token from `?token=`, `X-Consul-Token` or `Authorization: Bearer`, in Consul's
    /// order, resolved; nil when it names no token.
    private func requestACL(_ request: HTTPRequest, endpoint: String) -> RequestACL? {
        guard aclResolver.settings.enabled, !Self.tokenless.contains(endpoint) else { return .unrestricted }
        let secret = Self.secret(of: request)
        // A token in use is resolved without waiting for the catalog's lock.
        let index = catalog.aclIndex.load(ordering: .acquiring)
        if let known = aclResolver.cachedAuthorizer(secret: secret, aclIndex: index) {
            return RequestACL(secret: secret, resolver: aclResolver, authorizer: known, resolvedAt: index)
        }
        return catalog.read { RequestACL(secret: secret, resolver: aclResolver, state: $0) }
    }

    static func secret(of request: HTTPRequest) -> String? {
        if let token = request.query["token"], !token.isEmpty { return token }
        if let token = request.headers.first(name: "X-Consul-Token"), !token.isEmpty { return token }
        if let authorization = request.headers.first(name: "Authorization") {
            let parts = authorization.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return nil
    }

    // MARK: Helpers shared by the endpoint files

    /// Consul's 403 when the request's token lacks `needed` on `name` of `resource`; nil when it has it.
    func refusal(_ context: Context, _ resource: ACLResource, _ name: String = "", _ needed: ACLAccess) -> EventLoopFuture<HTTPResponse>? {
        guard !context.authorizer.allows(resource, name, needed) else { return nil }
        return immediate(.text(.forbidden, context.authorizer.denial(resource, name, needed)), context)
    }

    func json(_ value: JSON, _ context: Context, status: HTTPResponseStatus = .ok) -> HTTPResponse {
        .json(value.serialized(pretty: context.request.query.has("pretty")), status: status)
    }

    func immediate(_ response: HTTPResponse, _ context: Context) -> EventLoopFuture<HTTPResponse> {
        context.loop.makeSucceededFuture(response)
    }

    func badRequest(_ message: String, _ context: Context) -> EventLoopFuture<HTTPResponse> {
        immediate(.text(.badRequest, message), context)
    }

    /// Parses the body as a JSON object; `decodeFailed` turns its error into Consul's 400.
    func decodeBody(_ context: Context) throws(DecodeError) -> FieldReader {
        let bytes = context.request.bodyBytes
        guard !bytes.isEmpty else { throw DecodeError("EOF") }
        do {
            return try FieldReader(try JSON.parse(bytes), context: "request body")
        } catch let error as DecodeError {
            throw error
        } catch {
            throw DecodeError("\(error)")
        }
    }

    /// Consul's 400 for a body that does not decode: `Request decode failed: <why>`.
    func decodeFailed(_ error: any Error, _ context: Context) -> EventLoopFuture<HTTPResponse> {
        badRequest("Request decode failed: \((error as? DecodeError)?.message ?? "\(error)")", context)
    }

    /// Applies a write and answers once it is durable: `render` builds the success response.
    func write<T: Sendable>(_ context: Context, _ body: @escaping @Sendable (inout RegistryState) throws(CatalogError) -> T,
                            render: @escaping @Sendable (T) -> HTTPResponse) -> EventLoopFuture<HTTPResponse> {
        let promise = context.loop.makePromise(of: HTTPResponse.self)
        catalog.write(body) { result in
            switch result {
            case .success(let value): promise.succeed(render(value))
            case .failure(CatalogError.badRequest(let message)): promise.succeed(.text(.badRequest, message))
            case .failure(CatalogError.notFound(let message)): promise.succeed(.text(.notFound, message))
            case .failure(CatalogError.rejected(let message)): promise.succeed(.text(.internalServerError, message))
            case .failure(CatalogError.forbidden(let message)): promise.succeed(.text(.forbidden, message))
            case .failure(let error): promise.succeed(.text(.internalServerError, "write failed: \(error)"))
            }
        }
        return promise.futureResult
    }

    /// A blocking-capable read of JSON, with `?filter` applied to list items.
    func blockingJSON(_ context: Context, key: String,
                      _ build: @escaping @Sendable (borrowing RegistryState) -> JSON) -> EventLoopFuture<HTTPResponse> {
        blockingJSON(context, key: key, filteringItems: { state, filter in
            let value = build(state)
            return filter.map { $0.apply(to: value) } ?? value
        })
    }

    /// A blocking-capable read of JSON whose `build` applies `?filter` itself, for endpoints where
    /// Consul filters something other than the answer's items (the instances behind
    /// `/v1/catalog/services`, the `Services` of `/v1/catalog/node/:node`).
    func blockingJSON(_ context: Context, key: String,
                      filteringItems build: @escaping @Sendable (borrowing RegistryState, FilterExpression?) -> JSON)
        -> EventLoopFuture<HTTPResponse> {
        let filter: FilterExpression?
        do {
            filter = try context.request.query["filter"].flatMap { $0.isEmpty ? nil : try FilterExpression($0) }
        } catch {
            return badRequest("Failed to create boolean expression evaluator: \(error)", context)
        }
        let pretty = context.request.query.has("pretty")
        return BlockingQuery.run(context.request, catalog: catalog, key: key, acl: context.acl, on: context.loop,
                                 cancellation: context.cancellation) { state in
            context.acl.rendering { .json(build(state, filter).serialized(pretty: pretty)) }
        }
    }

    /// `?peer=`: this registry has no cluster peerings, so a read for any named peer finds nothing.
    func namesPeer(_ context: Context) -> Bool { !(context.request.query["peer"] ?? "").isEmpty }

    /// `?node-meta=key:value` filters (all must match).
    func nodeMetaFilter(_ context: Context) -> [(String, String)] {
        context.request.query.all("node-meta").map { pair in
            guard let colon = pair.firstIndex(of: ":") else { return (pair, "") }
            return (String(pair[..<colon]), String(pair[pair.index(after: colon)...]))
        }
    }

    static func nodeMatches(_ node: Node?, _ filters: [(String, String)]) -> Bool {
        guard let node else { return false }
        return filters.allSatisfy { node.meta[$0.0] == $0.1 }
    }

    /// `GET /`: browsers (asking for HTML) are sent to the UI, as Consul's agent does; other
    /// clients get a line of text with 200, so that checks probing the agent's root pass.
    private func index(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if context.request.headers[canonicalForm: "Accept"].contains(where: { $0.lowercased().hasPrefix("text/html") }) {
            return immediate(UIAssets.redirectToUI, context)
        }
        return immediate(.text(.ok, "Trellis registry: Consul HTTP API under /v1/, the web UI at /ui/, Prometheus metrics at /metrics."),
                         context)
    }

    private func prometheusMetrics(_ context: Context) -> EventLoopFuture<HTTPResponse> {

        if let refused = refusal(context, .agent, identity.nodeName, .read) { return refused }
        var response = HTTPResponse(body: ByteBuffer(bytes: metrics.render(catalog: catalog)))
        response.headers.add(name: "Content-Type", value: MetricsRegistry.contentType)
        return immediate(response, context)
    }
}
