import Foundation
import NIOCore
import TrellisCore
import TrellisHTTP

/// `/v1/operator/*` as it applies here: the registries stand in for Consul's Raft servers (each
/// lists itself as an instance of the `consul` service), and consensus belongs to the store, so
/// there is no Raft or autopilot to reconfigure.
extension ConsulAPI {
    /// The registries of this catalog, ordered by node; the first is reported as the leader.
    private struct Server {
        let id: String
        let node: String
        let address: String
        let leader: Bool
    }

    private static func servers(_ state: borrowing RegistryState) -> [Server] {
        let registries = state.instances(named: "consul").compactMap { instance in
            state.node(instance.node).map { node in
                (id: node.id, node: node.name, address: HostPort.format(node.address, instance.port))
            }
        }
        return registries.enumerated().map { Server(id: $1.id, node: $1.node, address: $1.address, leader: $0 == 0) }
    }

    /// The registries as Raft servers; with the etcd store, `Store` also lists etcd's members, which
    /// hold the consensus (a field of its own, which Consul's clients ignore).
    func operatorRaftConfiguration(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .`operator`, "", .read) { return refused }
        let configuration = catalog.read { state in
            JSONObject([
                ("Servers", .array(Self.servers(state).map { server in
                    .object(JSONObject([
                        ("ID", .string(server.id)), ("Node", .string(server.node)), ("Address", .string(server.address)),
                        ("Leader", .bool(server.leader)), ("ProtocolVersion", .string("3")), ("Voter", .bool(true)),
                        ("LastIndex", .unsigned(state.index)),
                    ]))
                })),
                // The index of Raft's configuration entry: there is no Raft log here.
                ("Index", .int(0)),
            ])
        }
        let promise = context.loop.makePromise(of: HTTPResponse.self)
        promise.completeWithTask { [self] in
            var body = configuration
            do {
                if let members = try await catalog.store.members() {
                    body.append("Store", .object(JSONObject([("Kind", .string(catalog.store.kind)), ("Members", .array(members))])))
                }
            } catch {
                return .text(.internalServerError, "cannot list the \(catalog.store.kind) members: \(error)")
            }
            return json(.object(body), context)
        }
        return promise.futureResult
    }

    /// `DELETE /v1/operator/raft/peer?address=|id=`: no registry is a Raft peer that can be removed.
    func operatorRaftRemovePeer(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .`operator`, "", .write) { return refused }
        let query = context.request.query
        if let id = query["id"], !id.isEmpty {
            return immediate(.text(.internalServerError, "id \(JSON.string(id).text) was not found in the Raft configuration"), context)
        }
        guard let address = query["address"], !address.isEmpty else { return badRequest("Must specify either ?id with the server's ID or ?address with IP:port of peer to remove", context) }
        return immediate(.text(.internalServerError, "address \(JSON.string(address).text) was not found in the Raft configuration"), context)
    }

    /// `POST /v1/operator/raft/transfer-leader`: there is no Raft leadership to hand over.
    func operatorRaftTransferLeader(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .`operator`, "", .write) { return refused }
        return immediate(.text(.internalServerError, "cannot find peer: the registry runs no Raft; its store keeps consensus"), context)
    }

    /// Autopilot's settings, kept with CAS as Consul keeps them; with no Raft they steer nothing.
    func operatorAutopilotConfiguration(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .`operator`, "", context.request.method == .GET ? .read : .write) { return refused }
        guard context.request.method == .PUT else {
            return immediate(json(catalog.read { $0.autopilotConfiguration }, context), context)
        }
        let update: JSONObject
        do { update = try decodeBody(context).object } catch { return decodeFailed(error, context) }
        var cas: UInt64?
        if let text = context.request.query["cas"], !text.isEmpty {
            guard let parsed = UInt64(text) else { return badRequest("Invalid cas: \(JSON.string(text).text)", context) }
            cas = parsed
        }
        return write(context, { [cas] (state: inout RegistryState) throws(CatalogError) -> Bool in
            state.updateAutopilotConfiguration(update, cas: cas)
        }, render: { Self.boolResponse($0) })
    }

    /// Every registry in the catalog whose `serfHealth` is passing counts as a healthy server.
    func operatorAutopilotHealth(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .`operator`, "", .read) { return refused }
        let (servers, healthy, index) = serverHealth()
        let body = JSONObject([
            ("Healthy", .bool(healthy.allSatisfy { $0 })), ("FailureTolerance", .int(Int64(max(0, (servers.count - 1) / 2)))),
            ("Servers", .array(zip(servers, healthy).map { server, ok in
                .object(JSONObject([
                    ("ID", .string(server.id)), ("Name", .string(server.node)), ("Address", .string(server.address)),
                    ("SerfStatus", .string(ok ? "alive" : "failed")), ("Version", .string(AgentIdentity.consulVersion)),
                    ("Leader", .bool(server.leader)), ("LastContact", .string("0s")), ("LastTerm", .int(1)),
                    ("LastIndex", .unsigned(index)), ("Healthy", .bool(ok)), ("Voter", .bool(true)),
                    ("StableSince", .string(stableSince)),
                ]))
            })),
        ])
        return immediate(json(.object(body), context), context)
    }

    func operatorAutopilotState(_ context: Context) -> EventLoopFuture<HTTPResponse> {

        if let refused = refusal(context, .`operator`, "", .read) { return refused }
        let (servers, healthy, index) = serverHealth()
        let entries = zip(servers, healthy).map { server, ok in
            (server.id, JSON.object(JSONObject([
                ("ID", .string(server.id)), ("Name", .string(server.node)), ("Address", .string(server.address)),
                ("NodeStatus", .string(ok ? "alive" : "failed")), ("Version", .string(AgentIdentity.consulVersion)),
                ("LastContact", .string("0s")), ("LastTerm", .int(1)), ("LastIndex", .unsigned(index)), ("Healthy", .bool(ok)),
                ("StableSince", .string(stableSince)), ("ReadReplica", .bool(false)),
                ("Status", .string(server.leader ? "leader" : "voter")), ("Meta", .object(JSONObject())), ("NodeType", .string("voter")),
            ])))
        }
        let tolerance = JSON.int(Int64(max(0, (servers.count - 1) / 2)))
        let body = JSONObject([
            ("Healthy", .bool(healthy.allSatisfy { $0 })), ("FailureTolerance", tolerance), ("OptimisticFailureTolerance", tolerance),
            ("Servers", .object(JSONObject(entries.map { (key: $0.0, value: $0.1) }))),
            ("Leader", .string(servers.first { $0.leader }?.id ?? "")), ("Voters", .strings(servers.map(\.id))),
        ])
        return immediate(json(.object(body), context), context)
    }

    /// When this registry started serving: the time its servers have been stable since, as far as it knows.
    private var stableSince: String { Date.ISO8601FormatStyle().format(startedAt) }

    private func serverHealth() -> ([Server], [Bool], UInt64) {
        catalog.read { state in
            let servers = Self.servers(state)
            let healthy = servers.map { state.check(CheckKey(node: $0.node, checkID: "serfHealth"))?.status == .passing }
            return (servers, healthy, state.index)
        }
    }

    /// `/v1/operator/keyring`: there is no gossip, so no encryption keyring, and every operation fails.
    func operatorKeyring(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .keyring, "", context.request.method == .GET ? .read : .write) { return refused }
        return immediate(.text(.internalServerError, "keyring operations are not available: the registry runs no gossip, so it has no encryption keyring"), context)
    }

    /// `GET /v1/operator/usage`: counts of the catalog, as Consul reports them per datacenter.
    func operatorUsage(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .`operator`, "", .read) { return refused }
        let dc = identity.datacenter
        return blockingJSON(context, key: WatchKey.services) { state in
            let instances = state.allInstances
            let kinds = ["api-gateway", "connect-native", "connect-proxy", "ingress-gateway", "mesh-gateway", "terminating-gateway"]
            let connect = kinds.map { kind in
                (key: kind, value: JSON.int(Int64(instances.filter {
                    kind == "connect-native" ? $0.kind.isEmpty && $0.connectTarget != nil : $0.kind == kind
                }.count)))
            }
            let billable = instances.filter { $0.kind.isEmpty && $0.name != "consul" }.count
            return .object(JSONObject([("Usage", .object(JSONObject([(dc, .object(JSONObject([
                ("Services", .int(Int64(state.serviceCount))), ("ServiceInstances", .int(Int64(instances.count))),
                ("ConnectServiceInstances", .object(JSONObject(connect))),
                ("BillableServiceInstances", .int(Int64(billable))), ("Nodes", .int(Int64(state.allNodes.count))),
            ])))]))), ("Index", .unsigned(state.watchIndex(WatchKey.services))), ("LastContact", .int(0)),
            ("KnownLeader", .bool(true)), ("ConsistencyLevel", .string("leader"))]))
        }
    }
}
