import Foundation
import NIOCore
import TrellisCore
import TrellisHTTP

/// The check that marks the registry's node in maintenance (`PUT /v1/agent/maintenance`), as Consul's.
enum NodeMaintenance {
    static let checkID = "_node_maintenance"
    static let defaultReason = "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
}

/// `/v1/agent/*` endpoints about the registry's node itself: maintenance, leave, tokens, host, metrics.
extension ConsulAPI {
    func agentNodeMaintenance(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let query = context.request.query
        guard query.has("enable") else { return badRequest("Missing value for enable", context) }
        let raw = query["enable"] ?? ""
        guard let enable = GoBool.parse(raw) else { return badRequest("Invalid value for enable: \"\(raw)\"", context) }
        let node = identity.nodeName
        var reason = query["reason"] ?? ""
        if reason.isEmpty { reason = NodeMaintenance.defaultReason }
        return write(context, { [reason] (state: inout CatalogState) throws(CatalogError) in
            let key = CheckKey(node: node, checkID: NodeMaintenance.checkID)
            if enable {
                var check = HealthCheck(node: node, checkID: NodeMaintenance.checkID, name: "Node Maintenance Mode")
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
        logger.notice("leave requested through the API; shutting down")
        onLeave()
        return immediate(HTTPResponse(status: .ok), context)
    }

    /// `PUT /v1/agent/join/:address`: joining the registry's own Serf address succeeds, as a
    /// single agent joining itself; there is no gossip pool to join anything else.
    func agentJoin(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let address = context.rest
        guard !address.isEmpty else { return badRequest("Missing address to join", context) }
        let wan = context.request.query.flag("wan") ?? false
        let own = HostPort.format(identity.address, wan ? 8302 : 8301)
        if address == own || address == identity.address { return immediate(HTTPResponse(status: .ok), context) }
        return immediate(.text(.internalServerError,
                               "Failed to join \(address): the registry runs no gossip; registries share a catalog through their store"), context)
    }

    /// `PUT /v1/agent/force-leave/:node`: as Serf's removal of a node it does not know, a no-op that
    /// succeeds (HashiCorp's `TestAPI_AgentForceLeave` ejects "foo"); there is no gossip pool here.
    func agentForceLeave(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        guard !context.rest.isEmpty else { return badRequest("Missing node name", context) }
        logger.info("force-leave requested; no gossip member to remove", metadata: ["node": "\(context.rest)"])
        return immediate(HTTPResponse(status: .ok), context)
    }

    /// `PUT /v1/agent/token/:type`: Consul's answer while ACLs are disabled.
    func agentToken(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        immediate(.text(.unauthorized, "ACL support disabled"), context)
    }

    /// `GET /v1/agent/host`: the machine the registry runs on, in the shapes Consul (gopsutil) reports.
    func agentHost(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        immediate(json(HostInfo.collect(dataDirectory: dataDirectory), context), context)
    }

    /// `GET /v1/agent/metrics`: the registry's metrics as Consul's JSON summary, or with
    /// `?format=prometheus` as Prometheus text (the same as `/metrics`).
    func agentMetrics(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let text = metrics.render(catalog: catalog)
        if context.request.query["format"] == "prometheus" {
            var response = HTTPResponse(body: ByteBuffer(bytes: text))
            response.headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
            return immediate(response, context)
        }
        return immediate(json(AgentMetricsSummary(exposition: text).json, context), context)
    }
}
