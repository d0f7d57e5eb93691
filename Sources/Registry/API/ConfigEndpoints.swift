import NIOCore
import TrellisCore
import TrellisHTTP

/// `/v1/config`: Consul's config entries, stored and served by kind and name with CAS and blocking
/// reads. Kinds that steer traffic through Consul's own proxies (routers, splitters, resolvers,
/// service and proxy defaults, intentions) are refused, naming the kind, because the sidecars do
/// not apply them yet: storing them would ignore them silently.
enum ConfigEntryKinds {
    static let stored: Set<String> = [
        "ingress-gateway", "terminating-gateway", "mesh", "exported-services", "sameness-group", "api-gateway",
        "http-route", "tcp-route", "inline-certificate", "file-system-certificate", "jwt-provider",
    ]
    static let notApplied: Set<String> = [
        "service-defaults", "proxy-defaults", "service-router", "service-splitter", "service-resolver", "service-intentions",
    ]
    /// Kinds whose one entry has a fixed name.
    static let fixedNames = ["proxy-defaults": "global", "mesh": "mesh"]

    /// Why `kind` cannot be written, nil when it can.
    static func refusal(_ kind: String) -> String? {
        if stored.contains(kind) { return nil }
        if notApplied.contains(kind) {
            return "config entry kind \"\(kind)\" is not applied by this registry's sidecars yet, so it is refused rather than "
                + "ignored; set routes, splits, retries and timeouts in the sidecar policy (trellis/policies/<service>)"
        }
        return "invalid config entry kind: \(kind)"
    }

    static func isKnown(_ kind: String) -> Bool { stored.contains(kind) || notApplied.contains(kind) }
}

extension ConsulAPI {
    /// `PUT /v1/config` (`?cas=`): `true` when stored, `false` when the CAS did not match.
    func configApply(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        var entry: JSONObject
        let kind: String, name: String
        do {
            let r = try decodeBody(context)
            guard let given = try r.string("Kind"), !given.isEmpty else {
                throw DecodeError("Payload does not contain a Kind/kind key at the top level")
            }
            kind = given.lowercased()
            if let refusal = ConfigEntryKinds.refusal(kind) { throw DecodeError(refusal) }
            name = try r.string("Name") ?? ""
            entry = r.object
        } catch {
            return badRequest("Request decoding failed: \((error as? DecodeError)?.message ?? "\(error)")", context)
        }
        if let fixed = ConfigEntryKinds.fixedNames[kind], name != fixed {
            return badRequest("invalid name (\(JSON.string(name).text)), only \(JSON.string(fixed).text) is supported", context)
        }
        guard !name.isEmpty else { return badRequest("Name is required", context) }
        guard name.utf8.count <= 256, !name.contains("/") else { return badRequest("Invalid config entry name: \(JSON.string(name).text)", context) }
        entry.pairs.removeAll { ["kind", "name"].contains($0.key.lowercased()) }
        entry.pairs.insert(contentsOf: [(key: "Kind", value: .string(kind)), (key: "Name", value: .string(name))], at: 0)
        if let refused = configEntryRefusal(context, kind: kind, name: name, .write) { return refused }
        let (cas, refusal) = casParameter(context)
        if let refusal { return immediate(refusal, context) }
        return write(context, { [entry] (state: inout RegistryState) throws(CatalogError) -> Bool in
            state.putConfigEntry(entry, kind: kind, name: name, cas: cas)
        }, render: { Self.boolResponse($0) })
    }

    /// `GET|DELETE /v1/config/:kind[/:name]`.
    func configEntry(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let parts = context.rest.split(separator: "/", maxSplits: 1).map(String.init)
        guard let kind = parts.first?.lowercased(), ConfigEntryKinds.isKnown(kind) else {
            return badRequest("invalid config entry kind: \(parts.first ?? "")", context)
        }
        let name = parts.count > 1 ? parts[1] : nil
        if context.request.method == .DELETE {
            guard let name else { return badRequest("Must provide a name to delete", context) }
            if let refused = configEntryRefusal(context, kind: kind, name: name, .write) { return refused }
            let (cas, refusal) = casParameter(context)
            if let refusal { return immediate(refusal, context) }
            return write(context, { (state: inout RegistryState) throws(CatalogError) -> Bool in
                state.deleteConfigEntry(kind: kind, name: name, cas: cas)
            }, render: { deleted in cas == nil ? .json(Array("{}".utf8)) : Self.boolResponse(deleted) })
        }
        guard let name else {
            return blockingJSON(context, key: WatchKey.config) { state in
                .array(state.configEntries(kind: kind).filter { entry in
                    let (resource, name) = Self.configEntryResource(kind: kind, name: entry.field("Name")?.stringValue ?? "")
                    return context.acl.visible(resource, name)
                }.map { .object($0) })
            }
        }
        if let refused = configEntryRefusal(context, kind: kind, name: name, .read) { return refused }
        let pretty = context.request.query.has("pretty")
        return BlockingQuery.run(context.request, catalog: catalog, key: WatchKey.config, on: context.loop,
                                 cancellation: context.cancellation) { state in
            guard let entry = state.configEntry(kind: kind, name: name) else {
                return .text(.notFound, "Config entry not found for \(JSON.string(kind).text) / \(JSON.string(name).text)")
            }
            return .json(JSON.object(entry).serialized(pretty: pretty))
        }
    }

    /// What a config entry's rights are taken from, as Consul: service entries from the service,
    /// mesh-wide ones (proxy defaults, mesh, gateways, exports) from `mesh`.
    static func configEntryResource(kind: String, name: String) -> (ACLResource, String) {
        kind.hasPrefix("service-") ? (.service, name) : (.mesh, "")
    }

    private func configEntryRefusal(_ context: Context, kind: String, name: String, _ needed: ACLAccess) -> EventLoopFuture<HTTPResponse>? {
        let (resource, name) = Self.configEntryResource(kind: kind, name: name)
        return refusal(context, resource, name, needed)
    }

    /// `GET /v1/catalog/gateway-services/:gateway`: the services an ingress or terminating gateway's entry names.
    func catalogGatewayServices(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .service, context.rest, .read) { return refused }
        let gateway = context.rest
        return blockingJSON(context, key: WatchKey.config) { state in
            var items: [JSON] = []
            for kind in ["ingress-gateway", "terminating-gateway"] {
                guard let entry = state.configEntry(kind: kind, name: gateway) else { continue }
                for service in RegistryState.gatewayServices(entry) {
                    var item = JSONObject([
                        ("Gateway", .object(JSONObject([("Name", .string(gateway))]))),
                        ("Service", .object(JSONObject([("Name", .string(service.name))]))),
                        ("GatewayKind", .string(kind)),
                    ])
                    if let port = service.port { item.append("Port", .int(Int64(port))) }
                    if let proto = service.protocol { item.append("Protocol", .string(proto)) }
                    items.append(.object(item))
                }
            }
            return .array(items)
        }
    }

    /// `/v1/health/ingress/:service`: health entries of the ingress gateways whose entry names `service`.
    func healthIngress(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let name = context.rest
        return healthEntries(context, service: name) { state in
            let gateways = state.configEntries(kind: "ingress-gateway").filter { entry in
                RegistryState.gatewayServices(entry).contains { $0.name == name }
            }.compactMap { $0.field("Name")?.stringValue }
            return gateways.flatMap { state.healthEntries(service: $0) }.filter { $0.service.kind == "ingress-gateway" }
        }
    }

    /// `?cas=` as an index, or the 400 for one that is not a number.
    private func casParameter(_ context: Context) -> (value: UInt64?, refusal: HTTPResponse?) {
        guard let text = context.request.query["cas"], !text.isEmpty else { return (nil, nil) }
        guard let value = UInt64(text) else { return (nil, .text(.badRequest, "Invalid cas: \(JSON.string(text).text)")) }
        return (value, nil)
    }
}
