import Foundation
import NIOCore
import TrellisCore
import TrellisHTTP

/// The checks that put the registry's node or one of its services in maintenance, as Consul's.
enum Maintenance {
    static let nodeCheckID = "_node_maintenance"
    static let nodeDefaultReason = "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."

    static func serviceCheckID(_ serviceID: String) -> String { "_service_maintenance:" + serviceID }

    /// Whether a check is one of these (Consul gives them the type `maintenance`).
    static func isMaintenance(_ checkID: String) -> Bool {
        checkID == nodeCheckID || checkID.hasPrefix("_service_maintenance:")
    }
}

/// `/v1/agent/*` endpoints about the registry's node itself: maintenance, leave, tokens, host, metrics.
extension ConsulAPI {
    func agentNodeMaintenance(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .node, identity.nodeName, .write) { return refused }
        let query = context.request.query
        guard query.has("enable") else { return badRequest("Missing value for enable", context) }
        let raw = query["enable"] ?? ""
        guard let enable = GoBool.parse(raw) else { return badRequest("Invalid value for enable: \"\(raw)\"", context) }
        let node = identity.nodeName
        var reason = query["reason"] ?? ""
        if reason.isEmpty { reason = Maintenance.nodeDefaultReason }
        return write(context, { [reason] (state: inout RegistryState) throws(CatalogError) in
            let key = CheckKey(node: node, checkID: Maintenance.nodeCheckID)
            if enable {
                var check = HealthCheck(node: node, checkID: Maintenance.nodeCheckID, name: "Node Maintenance Mode")
                check.notes = reason
                check.status = .critical
                state.putCheck(check)
            } else {
                state.removeCheck(key)
            }
        }, render: { _ in HTTPResponse(status: .ok) })
    }

    /// `PUT /v1/agent/leave`: a single-server agent that leaves shuts down gracefully.
    func agentLeave(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .agent, identity.nodeName, .write) { return refused }
        logger.notice("leave requested through the API; shutting down")
        onLeave()
        return immediate(HTTPResponse(status: .ok), context)
    }

    /// `PUT /v1/agent/join/:address`: joining the registry's own Serf address succeeds, as a
    /// single agent joining itself; there is no gossip pool to join anything else.
    func agentJoin(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .agent, identity.nodeName, .write) { return refused }
        let address = context.rest
        guard !address.isEmpty else { return badRequest("Missing address to join", context) }
        let wan = context.request.query.flag("wan") ?? false
        let own = HostPort.format(identity.address, wan ? AgentIdentity.serfWANPort : AgentIdentity.serfLANPort)
        if address == own || address == identity.address { return immediate(HTTPResponse(status: .ok), context) }
        return immediate(.text(.internalServerError,
                               "Failed to join \(address): the registry runs no gossip; registries share a catalog through their store"), context)
    }

    /// `PUT /v1/agent/force-leave/:node`: the registry itself is the one gossip member, and forcing
    /// a live member out does nothing (HashiCorp's `TestAPI_AgentForceLeave` ejects the agent's own
    /// node); any other name is Consul's `No node found` error.
    func agentForceLeave(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .`operator`, "", .write) { return refused }
        let node = context.rest
        guard !node.isEmpty else { return badRequest("Missing node name", context) }
        guard node == identity.nodeName else {
            return immediate(.text(.internalServerError, "agent: No node found with name '\(node)'"), context)
        }
        return immediate(HTTPResponse(status: .ok), context)
    }

    /// `PUT /v1/agent/token/:type`: sets one of the agent's tokens (`default` answers requests
    /// that carry none); Consul's 401 while ACLs are disabled.
    func agentToken(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let disabled = aclDisabled(context) { return disabled }
        if let refused = refusal(context, .acl, "", .write) { return refused }
        guard let type = ACLResolver.agentTokenTypes[context.rest] else {
            return immediate(.text(.notFound, "Token \"\(context.rest)\" is unknown"), context)
        }
        let secret: String
        do { secret = try decodeBody(context).string("Token") ?? "" } catch { return decodeFailed(error, context) }
        aclResolver.setAgentToken(type, secret)
        logger.info("agent token updated", metadata: ["type": "\(type)"])
        return immediate(HTTPResponse(status: .ok), context)
    }

    /// `GET /v1/agent/version`: the Consul API version the registry follows, and its own build.
    func agentVersion(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let body = JSONObject([
            ("SHA", .string("trellis-\(AgentIdentity.trellisVersion)")), ("BuildDate", .string(AgentIdentity.buildDate)),
            ("HumanVersion", .string(AgentIdentity.consulVersion)), ("FIPS", .string("")),
        ])
        return immediate(json(.object(body), context), context)
    }

    /// `GET /v1/agent/host`: the machine the registry runs on, in the shapes Consul (gopsutil) reports.
    func agentHost(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .`operator`, "", .read) { return refused }
        return immediate(json(HostInfo.collect(dataDirectory: dataDirectory), context), context)
    }

    /// `GET /v1/agent/metrics`: the registry's metrics as Consul's JSON summary, or with
    /// `?format=prometheus` as Prometheus text (the same as `/metrics`).
    func agentMetrics(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .agent, identity.nodeName, .read) { return refused }
        let text = metrics.render(catalog: catalog)
        if context.request.query["format"] == "prometheus" {
            var response = HTTPResponse(body: ByteBuffer(bytes: text))
            response.headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
            return immediate(response, context)
        }
        return immediate(json(AgentMetricsSummary(exposition: text, runtime: Self.runtimeGauges()).json, context), context)
    }

    /// The process's memory under the names of Consul's Go runtime gauges, from `/proc/self/status`:
    /// anonymous resident memory (heap and stacks) as `alloc_bytes`, all resident memory as `sys_bytes`.
    private static func runtimeGauges() -> [(name: String, value: Double)] {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return [] }
        func kib(_ field: String) -> Double? {
            status.split(separator: "\n").first { $0.hasPrefix(field + ":") }
                .flatMap { $0.split(separator: " ").dropFirst().first.flatMap { Double($0) } }
        }
        return [("consul.runtime.alloc_bytes", "RssAnon"), ("consul.runtime.sys_bytes", "VmRSS")].compactMap { name, field in
            kib(field).map { (name: name, value: $0 * 1024) }
        }
    }
}
