import NIOCore
import TrellisCore
import TrellisHTTP

/// `/v1/catalog/*`: the cluster-wide view of nodes and services, and direct catalog writes.
extension ConsulAPI {
    /// Service names with their tags; `?filter=` selects the instances (`ServiceNode`s) counted, as in Consul.
    func catalogServices(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let metaFilter = nodeMetaFilter(context)
        let peer = namesPeer(context)
        return blockingJSON(context, key: WatchKey.services, filteringItems: { state, filter in
            if peer { return .object(JSONObject()) }
            let tags = state.serviceTags { instance in
                guard let node = state.node(instance.node), Self.nodeMatches(node, metaFilter),
                      context.acl.visible(.service, instance.name), context.acl.visible(.node, node.name) else { return false }
                return filter?.matches(CatalogJSON.catalogServiceNode(node, instance)) ?? true
            }
            return .object(JSONObject(tags.map { ($0.name, .strings($0.tags)) }))
        })
    }

    func catalogService(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let name = context.rest
        return serviceNodes(context, service: name) { $0.instances(named: name) }
    }

    /// `/v1/catalog/connect/:service`: the instances that accept mesh traffic for `service`.
    func catalogConnect(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let name = context.rest
        return serviceNodes(context, service: name) { state in state.connectEntries(service: name).map(\.service) }
    }

    /// `ServiceNode`s of `instances`, with `?tag=`, `?node-meta=`, `?peer=` and `?filter=`.
    private func serviceNodes(_ context: Context, service name: String,
                              _ instances: @escaping @Sendable (borrowing RegistryState) -> [ServiceInstance]) -> EventLoopFuture<HTTPResponse> {
        let tags = context.request.query.all("tag")
        let metaFilter = nodeMetaFilter(context)
        let peer = namesPeer(context)
        return blockingJSON(context, key: WatchKey.service(name)) { state in
            if peer { return .array([]) }
            return .array(instances(state).compactMap { instance in
                guard tags.allSatisfy(instance.tags.contains), let node = state.node(instance.node),
                      Self.nodeMatches(node, metaFilter), context.acl.visible(.service, instance.name),
                      context.acl.visible(.node, node.name) else { return nil }
                return CatalogJSON.catalogServiceNode(node, instance)
            })
        }
    }

    func catalogNodes(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let metaFilter = nodeMetaFilter(context)
        return blockingJSON(context, key: WatchKey.nodes) { state in
            .array(state.allNodes.filter { Self.nodeMatches($0, metaFilter) && context.acl.visible(.node, $0.name) }.map(CatalogJSON.node))
        }
    }

    func catalogNode(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let name = context.rest
        return blockingJSON(context, key: WatchKey.node(name), filteringItems: { state, filter in
            guard let node = state.node(name), context.acl.visible(.node, name) else { return .null }
            let services = JSONObject(state.instances(onNode: name).filter { context.acl.visible(.service, $0.name) }
                .map { ($0.id, CatalogJSON.nodeService($0)) })
            return .object(JSONObject([
                ("Node", CatalogJSON.node(node)),
                ("Services", filter.map { $0.apply(to: .object(services)) } ?? .object(services)),
            ]))
        })
    }

    /// `/v1/catalog/node-services/:node`: the node and its services as a list, `?filter=` on each.
    func catalogNodeServices(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let name = context.rest
        guard !name.isEmpty else { return badRequest("Must provide node", context) }
        return blockingJSON(context, key: WatchKey.node(name), filteringItems: { state, filter in
            guard let node = state.node(name), context.acl.visible(.node, name) else { return .null }
            let services = JSON.array(state.instances(onNode: name).filter { context.acl.visible(.service, $0.name) }
                .map(CatalogJSON.nodeService))
            return .object(JSONObject([
                ("Node", CatalogJSON.node(node)),
                ("Services", filter.map { $0.apply(to: services) } ?? services),
            ]))
        })
    }

    func catalogDatacenters(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        immediate(json(.strings([identity.datacenter]), context), context)
    }

    func catalogRegister(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let nodeName: String
        var node: Node
        var service: ServiceInstance?
        var checkRequests: [CheckRequest] = []
        let skipNodeUpdate: Bool
        do {
            let r = try decodeBody(context)
            nodeName = try r.string("Node") ?? ""
            node = Node(id: try r.string("ID") ?? "", name: nodeName, address: try r.string("Address") ?? "",
                        datacenter: identity.datacenter, taggedAddresses: try r.stringMap("TaggedAddresses") ?? [:],
                        meta: try r.stringMap("NodeMeta") ?? [:])
            skipNodeUpdate = try r.bool("SkipNodeUpdate") ?? false
            if let s = try r.object("Service") {
                service = ServiceFields.catalogWeights(try ServiceFields.decode(s, node: nodeName, nameField: "Service"))
            }
            if let check = try r.object("Check") { checkRequests.append(try CheckFields.decode(check)) }
            for check in try r.objects("Checks") ?? [] { checkRequests.append(try CheckFields.decode(check)) }
            if let dc = try r.string("Datacenter"), !dc.isEmpty, dc != identity.datacenter {
                return immediate(.text(.internalServerError, "No path to datacenter"), context)
            }
        } catch {
            return decodeFailed(error, context)
        }
        guard !nodeName.isEmpty, !nodeName.contains("\n") else { return badRequest("Must provide node", context) }
        guard skipNodeUpdate || !node.address.isEmpty else {
            return badRequest("Must provide address if SkipNodeUpdate is not set", context)
        }
        if let service, service.name.isEmpty { return badRequest("Must provide service name with ID", context) }
        if !node.id.isEmpty && !Self.isUUID(node.id) { return badRequest("Invalid node ID: \"\(node.id)\"", context) }
        var checks: [HealthCheck] = []
        for request in checkRequests {
            let check = request.catalogCheck(node: nodeName)
            guard !check.checkID.isEmpty else { return badRequest("Missing check ID", context) }
            checks.append(check)
        }
        let authorizer = context.authorizer
        return write(context, { [node, checks, service] (state: inout RegistryState) throws(CatalogError) -> Bool in
            var node = node
            let existing = state.node(nodeName)
            try Self.authorizeCatalogRegister(authorizer, node: node, existing: existing, skipNodeUpdate: skipNodeUpdate,
                                              service: service, checks: checks, in: state)
            if existing == nil && skipNodeUpdate && node.address.isEmpty { throw .badRequest("Must provide address if SkipNodeUpdate is not set") }
            for check in checks where !check.serviceID.isEmpty {
                let known = state.instance(InstanceKey(node: nodeName, id: check.serviceID)) != nil || service?.id == check.serviceID
                if !known { throw .badRequest("Unknown service ID \"\(check.serviceID)\" for check ID \"\(check.checkID)\"") }
            }
            if let existing, skipNodeUpdate {
                node = existing
            } else if node.id.isEmpty, let existing {
                node.id = existing.id
            }
            state.putNode(node)
            if let service { state.putInstance(service) }
            for var check in checks {
                if let instance = state.instance(InstanceKey(node: nodeName, id: check.serviceID)), !check.serviceID.isEmpty {
                    check.serviceName = instance.name
                    check.serviceTags = instance.tags
                }
                state.putCheck(check)
            }
            return true
        }, render: { _ in .json(Array("true".utf8)) })
    }

    func catalogDeregister(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let nodeName: String, serviceID: String, checkID: String
        do {
            let r = try decodeBody(context)
            nodeName = try r.string("Node") ?? ""
            serviceID = try r.string("ServiceID") ?? ""
            checkID = try r.string("CheckID") ?? ""
            if let dc = try r.string("Datacenter"), !dc.isEmpty, dc != identity.datacenter {
                return immediate(.text(.internalServerError, "No path to datacenter"), context)
            }
        } catch {
            return decodeFailed(error, context)
        }
        guard !nodeName.isEmpty else { return badRequest("Must provide node", context) }
        guard nodeName != identity.nodeName || !serviceID.isEmpty || !checkID.isEmpty else {
            return badRequest("The registry's own node \"\(nodeName)\" cannot be deregistered", context)
        }
        let authorizer = context.authorizer
        return write(context, { (state: inout RegistryState) throws(CatalogError) -> Bool in
            if !serviceID.isEmpty {
                if let instance = state.instance(InstanceKey(node: nodeName, id: serviceID)) {
                    try authorizer.require(.service, instance.name, .write)
                }
                state.removeInstance(InstanceKey(node: nodeName, id: serviceID))
            } else if !checkID.isEmpty {
                if let check = state.check(CheckKey(node: nodeName, checkID: checkID)) { try authorizer.requireCheckWrite(check) }
                state.removeCheck(CheckKey(node: nodeName, checkID: checkID))
            } else {
                try authorizer.require(.node, nodeName, .write)
                state.removeNode(nodeName)
            }
            return true
        }, render: { _ in .json(Array("true".utf8)) })
    }

    /// Consul's rights for a catalog registration: node write when the node changes, service write
    /// on the service (and on the one an existing ID belonged to), check rights for each check.
    private static func authorizeCatalogRegister(_ authorizer: ACLAuthorizer, node: Node, existing: Node?, skipNodeUpdate: Bool,
                                                 service: ServiceInstance?, checks: [HealthCheck],
                                                 in state: borrowing RegistryState) throws(CatalogError) {
        let nodeChanges = existing.map { !skipNodeUpdate && ($0.address != node.address || $0.meta != node.meta
            || $0.taggedAddresses != node.taggedAddresses || (!node.id.isEmpty && $0.id != node.id)) } ?? true
        if nodeChanges { try authorizer.require(.node, node.name, .write) }
        if let service {
            try authorizer.require(.service, service.name, .write)
            if let previous = state.instance(InstanceKey(node: node.name, id: service.id)), previous.name != service.name {
                try authorizer.require(.service, previous.name, .write)
            }
        }
        for var check in checks {
            if !check.serviceID.isEmpty {
                check.serviceName = state.instance(InstanceKey(node: node.name, id: check.serviceID))?.name ?? service?.name ?? ""
            }
            try authorizer.requireCheckWrite(check)
        }
    }

    static func isUUID(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        return parts.map(\.count) == [8, 4, 4, 4, 12] && parts.allSatisfy { $0.allSatisfy(\.isHexDigit) }
    }
}
