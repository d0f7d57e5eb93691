import NIOCore
import NIOHTTP1
import TrellisCore
import TrellisHTTP

/// `/v1/agent/health/service/id/:id` and `/name/:name`: the local health of services on this node,
/// with the status code load balancers read (200 passing, 429 warning, 503 critical or maintenance).
extension ConsulAPI {
    func agentHealthByID(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let id = context.rest
        guard !id.isEmpty else { return badRequest("Missing serviceID", context) }
        let node = identity.nodeName, dc = identity.datacenter
        let text = Self.wantsText(context.request)
        let found = catalog.read { state -> (JSON, AggregatedHealth, String)? in
            guard id != "consul", let instance = state.instance(InstanceKey(node: node, id: id)) else { return nil }
            let (body, health) = Self.serviceHealth(instance, state: state, datacenter: dc)
            return (body, health, instance.name)
        }
        if let name = found?.2, let refused = refusal(context, .service, name, .read) { return refused }
        guard let (body, health, _) = found else {
            let reason = "ServiceId \(id) not found"
            if text { return immediate(.text(.notFound, reason), context) }
            let empty = JSON.object(JSONObject([("AggregatedStatus", .string(HealthStatus.critical.rawValue)),
                                                ("Service", .null), ("Checks", .null)]))
            return immediate(json(empty, context, status: .notFound), context)
        }
        if text { return immediate(.text(health.code, health.status), context) }
        return immediate(json(body, context, status: health.code), context)
    }

    func agentHealthByName(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let name = context.rest
        guard !name.isEmpty else { return badRequest("Missing service Name", context) }
        if let refused = refusal(context, .service, name, .read) { return refused }
        let node = identity.nodeName, dc = identity.datacenter
        let entries = catalog.read { state in
            state.instances(onNode: node).filter { $0.name == name && $0.id != "consul" }.map {
                Self.serviceHealth($0, state: state, datacenter: dc)
            }
        }
        // The worst of all instances: passing 200 < warning 429 < critical 503.
        let worst = entries.map(\.1).max { $0.code.code < $1.code.code }
        let status = worst?.status ?? "ServiceName \(name) Not Found"
        let code = worst?.code ?? .notFound
        if Self.wantsText(context.request) { return immediate(.text(code, status), context) }
        return immediate(json(.array(entries.map(\.0)), context, status: code), context)
    }

    /// An `AgentServiceChecksInfo` and its aggregate.
    private static func serviceHealth(_ instance: ServiceInstance, state: borrowing RegistryState,
                                      datacenter: String) -> (JSON, AggregatedHealth) {
        let checks = state.healthEntry(instance)?.checks ?? []
        let health = AggregatedHealth(checks)
        let body = JSON.object(JSONObject([
            ("AggregatedStatus", .string(health.status)),
            ("Service", CatalogJSON.agentService(instance, datacenter: datacenter)),
            ("Checks", .array(checks.map(CatalogJSON.check))),
        ]))
        return (body, health)
    }

    /// `?format=text` or `Accept: text/plain` asks for the bare status, as Consul's `returnTextPlain`.
    private static func wantsText(_ request: HTTPRequest) -> Bool {
        if request.headers.first(name: "Accept")?.hasPrefix("text/plain") == true { return true }
        return request.query["format"] == "text"
    }
}

/// Consul's `HealthChecks.AggregatedStatus`: maintenance over critical over warning over passing.
struct AggregatedHealth {
    let status: String
    let code: HTTPResponseStatus

    init(_ checks: [HealthCheck]) {
        let maintenance = checks.contains { Maintenance.isMaintenance($0.checkID) }
        let statuses = Set(checks.map(\.status))
        let worst: HealthStatus = maintenance ? .maintenance
            : statuses.contains(.critical) ? .critical : statuses.contains(.warning) ? .warning : .passing
        status = worst.rawValue
        code = switch worst {
        case .passing: .ok
        case .warning: .tooManyRequests
        default: .serviceUnavailable
        }
    }
}
