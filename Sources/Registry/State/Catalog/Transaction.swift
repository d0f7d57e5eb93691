import TrellisCore

/// One operation of `PUT /v1/txn`: KV, or a node, service, check or session, as Consul's are.
enum TxnOperation: Sendable {
    /// The verbs of node, service and check operations.
    enum CatalogVerb: String, Sendable {
        case set, cas, get, delete, deleteCAS = "delete-cas"
    }

    case kv(KVTxnOp)
    /// `index` is the `ModifyIndex` a `cas`/`delete-cas` expects.
    case node(CatalogVerb, Node, index: UInt64)
    case service(CatalogVerb, ServiceInstance, index: UInt64)
    case check(CatalogVerb, HealthCheck, index: UInt64)
    /// Consul's only session verb in transactions is `delete`.
    case deleteSession(id: String)
}

/// What a transaction did: every result (`{"KV": …}`, `{"Node": …}`, …), or why it changed nothing.
enum TxnOutcome: Sendable {
    case committed([JSON])
    case rolledBack([(index: Int, what: String)])
}

/// Why one operation of a transaction failed, in Consul's words.
struct TxnFailure: Error {
    let what: String
    init(_ what: String) { self.what = what }
}

extension RegistryState {
    /// Applies every operation, or none when any fails; each is checked against the state as the
    /// earlier ones leave it, and every failure is reported with its index, as Consul does.
    /// `ownNode` (the registry's node) cannot be deleted.
    mutating func applyTxn(_ ops: [TxnOperation], ownNode: String, now: ContinuousClock.Instant) -> TxnOutcome {
        let kvOps = ops.compactMap { if case .kv(let op) = $0 { op } else { nil } }
        if kvOps.count == ops.count { return applyKVTxn(kvOps, now: now) }
        var scratch = self
        var results: [JSON] = []
        var errors: [(index: Int, what: String)] = []
        for (i, op) in ops.enumerated() {
            do {
                results += try scratch.apply(op, ownNode: ownNode, now: now)
            } catch {
                errors.append((i, error.what))
            }
        }
        if !errors.isEmpty { return .rolledBack(errors) }
        self = scratch
        return .committed(results)
    }

    private mutating func apply(_ op: TxnOperation, ownNode: String, now: ContinuousClock.Instant) throws(TxnFailure) -> [JSON] {
        switch op {
        case .kv(let kvOp):
            return try applyKV(kvOp, now: now)
        case .node(let verb, let node, let index):
            return try applyNode(verb, node, index: index, ownNode: ownNode).map { [Self.result("Node", CatalogJSON.node($0))] } ?? []
        case .service(let verb, let service, let index):
            return try applyService(verb, service, index: index).map { [Self.result("Service", CatalogJSON.nodeService($0))] } ?? []
        case .check(let verb, let check, let index):
            return try applyCheck(verb, check, index: index).map { [Self.result("Check", CatalogJSON.check($0))] } ?? []
        case .deleteSession(let id):
            destroySession(id, now: now)
            return []
        }
    }

    /// Consul's rules shared by node, service and check operations: `get` needs the record, `cas`
    /// and `delete-cas` its `ModifyIndex` (0 for `cas` on a record that does not exist yet).
    private static func verify(_ verb: TxnOperation.CatalogVerb, modifyIndex: UInt64?, index: UInt64,
                               named: String) throws(TxnFailure) {
        switch verb {
        case .get where modifyIndex == nil: throw TxnFailure("\(named) doesn't exist")
        case .cas where (modifyIndex ?? 0) != index: throw TxnFailure("failed to set \(named), index is stale")
        case .deleteCAS where modifyIndex != index: throw TxnFailure("failed to delete \(named), index is stale")
        default: break
        }
    }

    /// The node after the operation; nil for deletions.
    private mutating func applyNode(_ verb: TxnOperation.CatalogVerb, _ node: Node, index: UInt64,
                                    ownNode: String) throws(TxnFailure) -> Node? {
        let name = node.name
        let existing = self.node(name)
        try Self.verify(verb, modifyIndex: existing?.modifyIndex, index: index, named: "node \(Self.quoted(name))")
        switch verb {
        case .get:
            return existing
        case .set, .cas:
            guard !name.isEmpty else { throw TxnFailure("Must provide node") }
            guard !node.address.isEmpty else { throw TxnFailure("Must provide address") }
            var node = node
            if node.id.isEmpty, let existing { node.id = existing.id }
            putNode(node)
            return self.node(name)
        case .delete, .deleteCAS:
            guard name != ownNode else { throw TxnFailure("The registry's own node \(Self.quoted(name)) cannot be deregistered") }
            removeNode(name)
            return nil
        }
    }

    private mutating func applyService(_ verb: TxnOperation.CatalogVerb, _ service: ServiceInstance,
                                       index: UInt64) throws(TxnFailure) -> ServiceInstance? {
        let key = InstanceKey(node: service.node, id: service.id)
        let existing = instance(key)
        try Self.verify(verb, modifyIndex: existing?.modifyIndex, index: index,
                        named: "service \(Self.quoted(key.id)) on node \(Self.quoted(key.node))")
        switch verb {
        case .get:
            return existing
        case .set, .cas:
            guard node(key.node) != nil else { throw TxnFailure("Missing node registration") }
            guard !service.name.isEmpty else { throw TxnFailure("Must provide service name with ID") }
            putInstance(service)
            return instance(key)
        case .delete, .deleteCAS:
            removeInstance(key)
            return nil
        }
    }

    private mutating func applyCheck(_ verb: TxnOperation.CatalogVerb, _ check: HealthCheck,
                                     index: UInt64) throws(TxnFailure) -> HealthCheck? {
        let key = CheckKey(node: check.node, checkID: check.checkID)
        let existing = self.check(key)
        try Self.verify(verb, modifyIndex: existing?.modifyIndex, index: index,
                        named: "check \(Self.quoted(key.checkID)) on node \(Self.quoted(key.node))")
        switch verb {
        case .get:
            return existing
        case .set, .cas:
            guard node(key.node) != nil else { throw TxnFailure("Missing node registration") }
            guard !key.checkID.isEmpty else { throw TxnFailure("Missing check ID") }
            var check = check
            if !check.serviceID.isEmpty {
                guard let instance = instance(InstanceKey(node: key.node, id: check.serviceID)) else {
                    throw TxnFailure("Missing service registration")
                }
                check.serviceName = instance.name
                check.serviceTags = instance.tags
            }
            putCheck(check)
            return self.check(key)
        case .delete, .deleteCAS:
            removeCheck(key)
            return nil
        }
    }

    /// One entry of a transaction's `Results`: `{"Node": …}` and the like.
    static func result(_ kind: String, _ value: JSON) -> JSON { .object(JSONObject([(kind, value)])) }

    /// A name quoted as Go's `%q` quotes it.
    private static func quoted(_ name: String) -> String { JSON.string(name).text }
}
