import NIOCore
import TrellisCore
import TrellisHTTP

/// `/v1/health/*` and `/v1/status/*`.
extension ConsulAPI {
    func healthService(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let name = context.rest
        return healthEntries(context, service: name) { state in state.healthEntries(service: name) }
    }

    /// `/v1/health/connect/:service`: the instances that accept mesh traffic for `service` — its
    /// `connect-proxy` instances (by `Proxy.DestinationServiceName`) and its Connect-native instances.
    func healthConnect(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let name = context.rest
        return healthEntries(context, service: name) { state in
            state.connectEntries(service: name)
        }
    }

    /// Health entries as `/v1/health/service/:name` answers them, with `?passing`, `?tag=`,
    /// `?node-meta=`, `?peer=` and `?filter=`.
    func healthEntries(_ context: Context, service name: String,
                               _ entries: @escaping @Sendable (borrowing RegistryState) -> [HealthEntry]) -> EventLoopFuture<HTTPResponse> {
        let query = context.request.query
        guard let passing = query.flag("passing") else { return badRequest("Invalid value for ?passing", context) }
        let tags = query.all("tag")
        let metaFilter = nodeMetaFilter(context)
        let peer = namesPeer(context)
        return blockingJSON(context, key: WatchKey.service(name)) { state in
            if peer { return .array([]) }
            return .array(entries(state).compactMap { entry in
                guard tags.allSatisfy(entry.service.tags.contains), Self.nodeMatches(entry.node, metaFilter),
                      context.acl.visible(.service, entry.service.name), context.acl.visible(.node, entry.node.name) else { return nil }
                if passing && entry.checks.contains(where: { $0.status != .passing }) { return nil }
                return .object(JSONObject([
                    ("Node", CatalogJSON.node(entry.node)),
                    ("Service", CatalogJSON.nodeService(entry.service)),
                    ("Checks", .array(entry.checks.map(CatalogJSON.check))),
                ]))
            })
        }
    }

    func healthChecks(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let name = context.rest
        let peer = namesPeer(context)
        return blockingJSON(context, key: WatchKey.service(name)) { state in
            .array(peer ? [] : state.checks(ofService: name).filter(context.acl.visibleCheck).map(CatalogJSON.check))
        }
    }

    func healthState(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let wanted = context.rest
        guard wanted == "any" || [HealthStatus.passing, .warning, .critical].map(\.rawValue).contains(wanted) else {
            return badRequest("Invalid state", context)
        }
        return blockingJSON(context, key: WatchKey.checks) { state in
            .array(state.allChecks.filter { (wanted == "any" || $0.status.rawValue == wanted) && context.acl.visibleCheck($0) }
                .map(CatalogJSON.check))
        }
    }

    func healthNode(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let name = context.rest
        return blockingJSON(context, key: WatchKey.node(name)) { state in
            .array(state.checks(onNode: name).filter(context.acl.visibleCheck).map(CatalogJSON.check))
        }
    }

    func statusLeader(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        immediate(json(.string(identity.leaderAddress), context), context)
    }

    func statusPeers(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        immediate(json(.strings([identity.leaderAddress]), context), context)
    }
}
