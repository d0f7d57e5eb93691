import NIOCore
import TrellisCore
import TrellisHTTP

/// `/v1/discovery-chain/:service`: the compiled discovery chain Consul's proxies follow. The kinds
/// that shape a chain (router, splitter, resolver, service defaults) are refused by this registry
/// (`ConfigEndpoints.swift`), so every chain is Consul's default one: a resolver for the service
/// in this datacenter. `POST` takes Consul's `OverrideProtocol` and `OverrideConnectTimeout`.
extension ConsulAPI {
    func discoveryChain(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let service = context.rest
        guard !service.isEmpty else { return badRequest("Missing chain name", context) }
        if let refused = refusal(context, .service, service, .read) { return refused }
        let dc = identity.datacenter
        if let compileDC = context.request.query["compile-dc"], !compileDC.isEmpty, compileDC != dc {
            return immediate(.text(.internalServerError, "No path to datacenter"), context)
        }
        var protocolName = "tcp"
        var connectTimeout = "5s"
        var overridden = false
        if context.request.method == .POST, !context.request.bodyBytes.isEmpty {
            do {
                let r = try decodeBody(context)
                if let value = try r.string("OverrideProtocol"), !value.isEmpty { protocolName = value; overridden = true }
                if let timeout = try r.duration("OverrideConnectTimeout") {
                    connectTimeout = GoDuration.format(timeout)
                    overridden = true
                }
            } catch {
                return decodeFailed(error, context)
            }
        }
        let target = "\(service).default.default.\(dc)"
        let node = "resolver:\(target)"
        let (chain, protocolFinal, timeoutFinal, isDefault) = (service, protocolName, connectTimeout, !overridden)
        // Not through the blocking read's response cache: that is keyed by path and query, and a
        // POST's overrides are in its body.
        let body = JSON.object(JSONObject([("Chain", .object(JSONObject([
                ("ServiceName", .string(chain)), ("Namespace", .string("default")), ("Partition", .string("default")),
                ("Datacenter", .string(dc)), ("CustomizationHash", .string("")), ("Default", .bool(isDefault)),
                ("Protocol", .string(protocolFinal)), ("ServiceMeta", .null), ("StartNode", .string(node)),
                ("Nodes", .object(JSONObject([(node, .object(JSONObject([
                    ("Type", .string("resolver")), ("Name", .string(target)),
                    ("Resolver", .object(JSONObject([("ConnectTimeout", .string(timeoutFinal)), ("Default", .bool(true)),
                                                     ("Target", .string(target))]))),
                ])))]))),
                ("Targets", .object(JSONObject([(target, .object(JSONObject([
                    ("ID", .string(target)), ("Service", .string(chain)), ("Namespace", .string("default")),
                    ("Partition", .string("default")), ("Datacenter", .string(dc)), ("ConnectTimeout", .string(timeoutFinal)),
                    ("MeshGateway", .object(JSONObject())),
                ])))]))),
            ])))]))
        var response = json(body, context)
        ConsulHeaders.addQueryMeta(&response.headers, index: catalog.read { $0.watchIndex(WatchKey.config) })
        return immediate(response, context)
    }
}
