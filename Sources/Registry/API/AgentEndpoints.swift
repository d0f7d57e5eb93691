import NIOCore
import TrellisCore
import TrellisHTTP

/// `/v1/agent/*`: services and checks registered on this registry's own node.
extension ConsulAPI {
    func agentServices(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let node = identity.nodeName, dc = identity.datacenter
        return blockingJSON(context, key: WatchKey.node(node)) { state in
            .object(JSONObject(state.instances(onNode: node).filter { $0.id != "consul" && context.acl.visible(.service, $0.name) }.map {
                ($0.id, CatalogJSON.agentService($0, datacenter: dc))
            }))
        }
    }

    /// One agent service; blocks on `?hash=` (Consul's hash-based blocking) until the service changes.
    func agentService(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let key = InstanceKey(node: identity.nodeName, id: context.rest)
        let dc = identity.datacenter
        let pretty = context.request.query.has("pretty")
        guard key.id != "consul", let name = catalog.read({ $0.instance(key)?.name }) else {
            return immediate(.text(.notFound, "unknown service ID: \(context.rest)"), context)
        }
        if let refused = refusal(context, .service, name, .read) { return refused }
        return BlockingQuery.run(context.request, catalog: catalog, key: WatchKey.node(key.node), hashed: true,
                                 acl: context.acl, on: context.loop, cancellation: context.cancellation) { state in
            guard let instance = state.instance(key) else { return .text(.notFound, "unknown service ID: \(key.id)") }
            let hash = ConsulHeaders.contentHash(of: CatalogJSON.agentService(instance, datacenter: dc).serialized())
            var response = HTTPResponse.json(CatalogJSON.agentService(instance, datacenter: dc, contentHash: hash)
                .serialized(pretty: pretty))
            response.headers.add(name: ConsulHeaders.contentHash, value: hash)
            return response
        }
    }

    func agentChecks(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let node = identity.nodeName
        return blockingJSON(context, key: WatchKey.node(node)) { state in
            .object(JSONObject(state.checks(onNode: node).filter { check in
                check.checkID != "serfHealth" && context.acl.visibleCheck(check)
            }.map {
                ($0.checkID, CatalogJSON.check($0))
            }))
        }
    }

    /// `PUT /v1/agent/service/register`, with a `Connect.SidecarService` registering its proxy too.
    func agentRegisterService(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let registrations: [AgentRegistration]
        do {
            registrations = try agentRegistrations(try decodeBody(context))
        } catch AgentRegistration.Refusal.invalid(let message) {
            return badRequest(message, context)
        } catch {
            return decodeFailed(error, context)
        }
        let replace = context.request.query.flag("replace-existing-checks") ?? false
        let node = identity.nodeName
        let authorizer = context.authorizer
        return write(context, { (state: inout RegistryState) throws(CatalogError) -> [HealthCheck] in
            for registration in registrations {
                try authorizer.require(.service, registration.instance.name, .write)
                if let destination = registration.instance.proxy?["DestinationServiceName"]?.stringValue, !destination.isEmpty {
                    try authorizer.require(.service, destination, .write)
                }
                if let existing = state.instance(InstanceKey(node: node, id: registration.instance.id)) {
                    try authorizer.require(.service, existing.name, .write)
                }
            }
            return try AgentRegistration.apply(registrations, node: node, replacingChecks: replace, to: &state)
        }, render: { [checker] stored in
            stored.forEach(checker.checkRegistered)
            return HTTPResponse(status: .ok)
        })
    }

    /// The services of one registration body (the service and, with `Connect.SidecarService`, its
    /// proxy), checked as Consul's agent checks them.
    func agentRegistrations(_ r: FieldReader) throws -> [AgentRegistration] {
        let node = identity.nodeName
        var parent = try serviceRegistration(r, node: node)
        var registrations = [parent]
        if let connect = try r.object("Connect"), let sidecar = try connect.object("SidecarService") {
            let proxy = try serviceRegistration(sidecar, node: node, parent: parent.instance)
            // As Consul: the shorthand is not kept on the parent once its proxy exists.
            parent.instance.connect = .object(JSONObject(connect.object.pairs.filter { $0.key.lowercased() != "sidecarservice" }))
            registrations = [parent, proxy]
        }
        return try registrations.enumerated().map { index, registration in
            let (instance, requests) = registration
            guard !instance.name.isEmpty else { throw AgentRegistration.Refusal.invalid("Missing service name") }
            guard !["0.0.0.0", "::", "[::]"].contains(instance.address) else { throw AgentRegistration.Refusal.invalid("Invalid service address") }
            guard instance.id != "consul" else {
                throw AgentRegistration.Refusal.invalid("Service ID \"consul\" is reserved for the registry itself")
            }
            if let reason = instance.weights.invalidReason { throw AgentRegistration.Refusal.invalid("Invalid Weights: \(reason)") }
            var checks: [(check: HealthCheck, explicitStatus: Bool)] = []
            for (i, request) in requests.enumerated() {
                let definition: CheckDefinition
                do { definition = try CheckFields.validateRunnable(request.definition) } catch {
                    throw AgentRegistration.Refusal.invalid((error as? DecodeError)?.message ?? "\(error)")
                }
                let defaultID = requests.count > 1 ? "service:\(instance.id):\(i + 1)" : "service:\(instance.id)"
                var check = HealthCheck(node: node, checkID: request.id.isEmpty ? defaultID : request.id,
                                        name: request.name.isEmpty ? "Service '\(instance.name)' check" : request.name)
                check.notes = request.notes
                check.status = request.status ?? .critical
                check.serviceID = instance.id
                check.serviceName = instance.name
                check.serviceTags = instance.tags
                check.definition = definition
                checks.append((check, request.status != nil))
            }
            return AgentRegistration(instance: instance, checks: checks, isSidecar: index == 1)
        }
    }

    /// A service of a registration body with its `Check`/`Checks`; with `parent`, its `SidecarService`.
    private func serviceRegistration(_ r: FieldReader, node: String,
                                     parent: ServiceInstance? = nil) throws(DecodeError) -> (instance: ServiceInstance, checks: [CheckRequest]) {
        let instance: ServiceInstance
        if let parent {
            instance = try SidecarServiceRegistration.instance(r, parent: parent)
        } else {
            instance = try ServiceFields.decode(r, node: node, nameField: "Name")
        }
        let scripts = identity.enableScriptChecks
        var checks: [CheckRequest] = []
        if let check = try r.object("Check") { checks.append(try CheckFields.decode(check, scripts: scripts)) }
        for check in try r.objects("Checks") ?? [] { checks.append(try CheckFields.decode(check, scripts: scripts)) }
        return (instance, checks)
    }

    /// Deregisters a service and, as Consul does, the sidecar proxy registered with it.
    func agentDeregisterService(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let key = InstanceKey(node: identity.nodeName, id: context.rest)
        guard key.id != "consul" else { return badRequest("Service ID \"consul\" is reserved for the registry itself", context) }
        let authorizer = context.authorizer
        return write(context, { (state: inout RegistryState) throws(CatalogError) in
            guard let instance = state.instance(key) else { throw .notFound("Unknown service ID \"\(key.id)\". Ensure that the service ID is passed, not the service name.") }
            try authorizer.require(.service, instance.name, .write)
            state.removeInstance(key)
            let sidecar = InstanceKey(node: key.node, id: SidecarServiceRegistration.sidecarID(of: key.id))
            if let proxy = state.instance(sidecar), proxy.proxy?["DestinationServiceID"]?.stringValue == key.id {
                state.removeInstance(sidecar)
            }
        }, render: { _ in HTTPResponse(status: .ok) })
    }

    func agentServiceMaintenance(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let query = context.request.query
        guard !context.rest.isEmpty else { return badRequest("Missing service ID", context) }
        guard query.has("enable") else { return badRequest("Missing value for enable", context) }
        let raw = query["enable"] ?? ""
        guard let enable = GoBool.parse(raw) else { return badRequest("Invalid value for enable: \"\(raw)\"", context) }
        let node = identity.nodeName, serviceID = context.rest
        var reason = query["reason"] ?? ""
        if reason.isEmpty { reason = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message." }
        let checkID = Maintenance.serviceCheckID(serviceID)
        let authorizer = context.authorizer
        return write(context, { [reason] (state: inout RegistryState) throws(CatalogError) in
            guard let instance = state.instance(InstanceKey(node: node, id: serviceID)) else {
                throw .notFound("No service registered with ID \"\(serviceID)\"")
            }
            try authorizer.require(.service, instance.name, .write)
            if enable {
                var check = HealthCheck(node: node, checkID: checkID, name: "Service Maintenance Mode")
                check.notes = reason
                check.status = .critical
                check.serviceID = serviceID
                check.serviceName = instance.name
                check.serviceTags = instance.tags
                state.putCheck(check)
            } else {
                state.removeCheck(CheckKey(node: node, checkID: checkID))
            }
        }, render: { _ in HTTPResponse(status: .ok) })
    }

    func agentRegisterCheck(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let node = identity.nodeName
        let request: CheckRequest
        let definition: CheckDefinition
        do {
            request = try CheckFields.decode(try decodeBody(context), scripts: identity.enableScriptChecks)
        } catch {
            return decodeFailed(error, context)
        }
        guard !request.name.isEmpty else { return badRequest("Missing check name", context) }
        do { definition = try CheckFields.validateRunnable(request.definition) } catch {
            return badRequest(error.message, context)
        }
        var check = HealthCheck(node: node, checkID: request.id.isEmpty ? request.name : request.id, name: request.name)
        check.notes = request.notes
        check.status = request.status ?? .critical
        check.serviceID = request.serviceID
        check.definition = definition
        let authorizer = context.authorizer
        return write(context, { [check] (state: inout RegistryState) throws(CatalogError) -> HealthCheck in
            var check = check
            if !check.serviceID.isEmpty {
                guard let instance = state.instance(InstanceKey(node: node, id: check.serviceID)) else {
                    throw .notFound("ServiceID \"\(check.serviceID)\" does not exist")
                }
                check.serviceName = instance.name
                check.serviceTags = instance.tags
            }
            try authorizer.requireCheckWrite(check)
            if let existing = state.check(CheckKey(node: node, checkID: check.checkID)) { try authorizer.requireCheckWrite(existing) }
            return state.registerCheck(check, explicitStatus: request.status != nil)
        }, render: { [checker] check in
            checker.checkRegistered(check)
            return HTTPResponse(status: .ok)
        })
    }

    func agentDeregisterCheck(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let key = CheckKey(node: identity.nodeName, checkID: context.rest)
        guard key.checkID != "serfHealth" else { return badRequest("Check \"serfHealth\" belongs to the node and cannot be removed", context) }
        let authorizer = context.authorizer
        return write(context, { (state: inout RegistryState) throws(CatalogError) in
            guard let check = state.check(key) else { throw .notFound("Unknown check ID \"\(key.checkID)\". Ensure that the check ID is passed, not the check name.") }
            try authorizer.requireCheckWrite(check)
            state.removeCheck(key)
        }, render: { _ in HTTPResponse(status: .ok) })
    }

    func agentCheckTTL(_ context: Context, _ status: HealthStatus) -> EventLoopFuture<HTTPResponse> {
        setCheckStatus(context, status: status, output: Probes.truncated(context.request.query["note"] ?? ""))
    }

    func agentCheckUpdate(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let statusText: String
        let output: String
        do {
            let r = try decodeBody(context)
            statusText = try r.string("Status") ?? ""
            output = try r.string("Output") ?? ""
        } catch {
            return decodeFailed(error, context)
        }
        guard let status = HealthStatus(rawValue: statusText), status != .maintenance else {
            return badRequest("Invalid check status: '\(statusText)'", context)
        }
        return setCheckStatus(context, status: status, output: Probes.truncated(output))
    }

    private func setCheckStatus(_ context: Context, status: HealthStatus, output: String) -> EventLoopFuture<HTTPResponse> {
        let key = CheckKey(node: identity.nodeName, checkID: context.rest)
        let authorizer = context.authorizer
        return write(context, { (state: inout RegistryState) throws(CatalogError) -> HealthCheck in
            guard var check = state.check(key) else {
                throw .notFound("Unknown check ID \"\(key.checkID)\". Ensure that the check ID is passed, not the check name.")
            }
            try authorizer.requireCheckWrite(check)
            guard check.definition.ttl != nil else {
                throw .badRequest("CheckID \"\(key.checkID)\" does not have associated TTL")
            }
            check.status = status
            check.output = output
            state.putCheck(check)
            return check
        }, render: { [checker] check in
            checker.statusSet(check)
            return HTTPResponse(status: .ok)
        })
    }

    func agentSelf(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .agent, identity.nodeName, .read) { return refused }
        let id = identity
        // The node as stored, so that metadata changed by a reload shows.
        let meta = catalog.read { $0.node(id.nodeName)?.meta } ?? AgentIdentity.nodeMeta(id.nodeMeta)
        let config = JSONObject([
            ("Datacenter", .string(id.datacenter)), ("PrimaryDatacenter", .string(id.datacenter)),
            ("NodeName", .string(id.nodeName)), ("NodeID", .string(id.nodeID)),
            ("Revision", .string("trellis-\(AgentIdentity.trellisVersion)")), ("Server", .bool(true)),
            ("Version", .string(AgentIdentity.consulVersion)), ("BuildDate", .string(AgentIdentity.buildDate)),
        ])
        // Addresses as Consul's sanitized runtime config writes a net.Addr: `tcp://HOST:PORT`.
        func tcp(_ port: Int) -> JSON { .string("tcp://\(HostPort.format(id.address, port))") }
        let debug = JSONObject([
            ("Datacenter", .string(id.datacenter)), ("NodeName", .string(id.nodeName)), ("NodeID", .string(id.nodeID)),
            ("NodeMeta", .stringMap(meta.filter { !$0.key.hasPrefix("consul-") })), ("ServerMode", .bool(true)), ("Bootstrap", .bool(true)),
            ("BindAddr", .string(id.address)), ("AdvertiseAddrLAN", .string(id.address)),
            ("AdvertiseAddrWAN", .string(id.address)), ("ClientAddrs", .strings([id.address])),
            ("HTTPAddrs", .array([tcp(id.httpPort)])), ("HTTPPort", .int(Int64(id.httpPort))), ("HTTPSPort", .int(-1)),
            ("DNSPort", .int(-1)), ("ServerPort", .int(Int64(AgentIdentity.serverPort))),
            ("RPCAdvertiseAddr", tcp(AgentIdentity.serverPort)), ("RPCBindAddr", tcp(AgentIdentity.serverPort)),
            ("SerfAdvertiseAddrLAN", tcp(AgentIdentity.serfLANPort)), ("SerfAdvertiseAddrWAN", tcp(AgentIdentity.serfWANPort)),
            ("SerfBindAddrLAN", tcp(AgentIdentity.serfLANPort)), ("SerfBindAddrWAN", tcp(AgentIdentity.serfWANPort)),
            ("SerfPortLAN", .int(Int64(AgentIdentity.serfLANPort))), ("SerfPortWAN", .int(Int64(AgentIdentity.serfWANPort))),
            ("EnableScriptChecks", .bool(id.enableScriptChecks)), ("EnableLocalScriptChecks", .bool(id.enableScriptChecks)),
            ("ACLsEnabled", .bool(aclResolver.settings.enabled)),
            ("ACLResolverSettings", .object(JSONObject([
                ("ACLsEnabled", .bool(aclResolver.settings.enabled)), ("Datacenter", .string(id.datacenter)),
                ("NodeName", .string(id.nodeName)), ("ACLDefaultPolicy", .string(aclResolver.settings.defaultAllows ? "allow" : "deny")),
            ]))),
            ("CheckOutputMaxSize", .int(Int64(Probes.outputLimit))),
            ("DefaultIntentionPolicy", .string(id.defaultIntentionPolicy?.rawValue ?? "")),
            ("Version", .string(AgentIdentity.consulVersion)), ("Revision", .string("trellis-\(AgentIdentity.trellisVersion)")),
        ])
        let coord = JSONObject([
            ("Vec", .array(Array(repeating: .int(0), count: 8))), ("Error", .double(1.5)),
            ("Adjustment", .int(0)), ("Height", .double(1e-05)),
        ])
        let counts = catalog.read { state in
            (checks: state.checks(onNode: id.nodeName).count, services: state.instances(onNode: id.nodeName).count,
             index: state.index)
        }
        let stats = JSONObject([
            ("agent", .stringMap(["checks": String(counts.checks), "services": String(counts.services)])),
            ("consul", .stringMap(["leader": "true", "leader_addr": id.leaderAddress, "server": "true",
                                   "bootstrap": "true", "known_datacenters": "1"])),
            ("raft", .stringMap(["state": "Leader", "num_peers": "0",
                                 "last_log_index": String(counts.index)])),
            ("runtime", .stringMap(["os": "linux", "cpu_count": String(System.coreCount)])),
        ])
        let xds = JSONObject([("SupportedProxies", .object(JSONObject())), ("Port", .int(-1)),
                              ("Ports", .object(JSONObject([("Plaintext", .int(-1)), ("TLS", .int(-1))])))])
        let body = JSONObject([
            ("Config", .object(config)), ("DebugConfig", .object(debug)), ("Coord", .object(coord)),
            ("Member", memberJSON()), ("Stats", .object(stats)),
            ("Meta", .stringMap(meta)),
            ("xDS", .object(xds)),
        ])
        return immediate(json(.object(body), context), context)
    }

    /// The gossip members: the registry itself, in the WAN pool (`?wan`) as `<node>.<dc>` on the Serf WAN port.
    func agentMembers(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let wan = context.request.query.flag("wan") ?? false
        return immediate(context.acl.rendering {
            json(.array(context.acl.visible(.node, identity.nodeName) ? [memberJSON(wan: wan)] : []), context)
        }, context)
    }

    private func memberJSON(wan: Bool = false) -> JSON {
        let id = identity
        return .object(JSONObject([
            ("Name", .string(wan ? "\(id.nodeName).\(id.datacenter)" : id.nodeName)), ("Addr", .string(id.address)),
            ("Port", .int(Int64(wan ? AgentIdentity.serfWANPort : AgentIdentity.serfLANPort))),
            ("Tags", .stringMap(["role": "consul", "dc": id.datacenter, "acls": aclResolver.settings.enabled ? "1" : "0", "port": String(AgentIdentity.serverPort),
                                 "build": "\(AgentIdentity.consulVersion):trellis", "id": id.nodeID,
                                 "vsn": "2", "vsn_min": "2", "vsn_max": "3", "bootstrap": "1", "segment": ""])),
            ("Status", .int(1)), ("ProtocolMin", .int(1)), ("ProtocolMax", .int(5)), ("ProtocolCur", .int(2)),
            ("DelegateMin", .int(2)), ("DelegateMax", .int(5)), ("DelegateCur", .int(4)),
        ]))
    }
}
