import NIOCore
import TrellisCore
import TrellisHTTP

/// `PUT /v1/txn`: up to 64 KV, node, service, check and session operations, all or none.
extension ConsulAPI {
    static let maxTxnOps = 64

    func txn(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let ops: [TxnOperation]
        do {
            let bytes = context.request.bodyBytes
            guard !bytes.isEmpty else { throw DecodeError("EOF") }
            let parsed: JSON
            do { parsed = try JSON.parse(bytes) } catch { throw DecodeError("\(error)") }
            guard let items = parsed.arrayValue else { throw DecodeError("a transaction is a JSON array of operations") }
            if items.count > Self.maxTxnOps {
                return immediate(.text(.payloadTooLarge,
                    "Transaction contains too many operations (\(items.count) > \(Self.maxTxnOps))"), context)
            }
            let datacenter = identity.datacenter
            ops = try items.map { json throws(DecodeError) in try TxnOperation(json, datacenter: datacenter) }
        } catch {
            return decodeFailed(error, context)
        }
        let pretty = context.request.query.has("pretty")
        let ownNode = identity.nodeName
        let authorizer = context.authorizer
        return write(context, { (state: inout RegistryState) throws(CatalogError) -> TxnOutcome in
            let denied = ops.enumerated().compactMap { index, op in Self.txnDenial(op, authorizer, in: state).map { (index, $0) } }
            return denied.isEmpty ? state.applyTxn(ops, ownNode: ownNode, now: .now) : .rolledBack(denied)
        }, render: { outcome in
            switch outcome {
            case .committed(let all):
                // Entries read by `get-tree` that the token may not read are left out.
                let results = all.filter { result in
                    guard let key = result["KV"]?["Key"]?.stringValue else { return true }
                    return authorizer.allows(.key, key, .read)
                }
                let body = JSON.object(JSONObject([("Results", .array(results)),
                                                   ("Errors", .null)]))
                return .json(body.serialized(pretty: pretty))
            case .rolledBack(let errors):
                let body = JSON.object(JSONObject([("Results", .null), ("Errors", .array(errors.map { error in
                    .object(JSONObject([("OpIndex", .int(Int64(error.index))), ("What", .string(error.what))]))
                }))]))
                return .json(body.serialized(pretty: pretty), status: .conflict)
            }
        })
    }
}

extension ConsulAPI {
    /// Why the token may not run `op` (Consul's permission message), nil when it may.
    static func txnDenial(_ op: TxnOperation, _ authorizer: ACLAuthorizer, in state: borrowing RegistryState) -> String? {
        let needed: (ACLResource, String, ACLAccess)
        switch op {
        case .kv(let kv):
            switch kv.verb {
            case .get, .getTree, .checkIndex, .checkSession, .checkNotExists: needed = (.key, kv.key, .read)
            case .deleteTree: return authorizer.allowsKeyWritePrefix(kv.key) ? nil : authorizer.denial(.key, kv.key, .write)
            case .set, .cas, .lock, .unlock, .delete, .deleteCAS: needed = (.key, kv.key, .write)
            }
            // `get-tree` results are filtered instead.
            if kv.verb == .getTree { return nil }
        case .node(let verb, let node, _):
            needed = (.node, node.name, verb == .get ? .read : .write)
        case .service(let verb, let service, _):
            let existing = state.instance(InstanceKey(node: service.node, id: service.id))?.name
            let name = service.name.isEmpty ? existing ?? "" : service.name
            if verb != .get, let existing, existing != name, !authorizer.allows(.service, existing, .write) {
                return authorizer.denial(.service, existing, .write)
            }
            needed = (.service, name, verb == .get ? .read : .write)
        case .check(let verb, let check, _):
            var check = check
            if let existing = state.check(CheckKey(node: check.node, checkID: check.checkID)) {
                check.serviceID = existing.serviceID
                check.serviceName = existing.serviceName
            } else if !check.serviceID.isEmpty {
                check.serviceName = state.instance(InstanceKey(node: check.node, id: check.serviceID))?.name ?? ""
            }
            if verb == .get { return authorizer.allowsCheckRead(check) ? nil : authorizer.denial(.node, check.node, .read) }
            do { try authorizer.requireCheckWrite(check) } catch { return error.description }
            return nil
        case .deleteSession(let id):
            needed = (.session, state.session(id)?.node ?? "", .write)
        }
        return authorizer.allows(needed.0, needed.1, needed.2) ? nil : authorizer.denial(needed.0, needed.1, needed.2)
    }
}

extension TxnOperation {
    /// Reads one operation of a `PUT /v1/txn` body: an object with one of `KV`, `Node`, `Service`,
    /// `Check` or `Session` (HashiCorp's client sends the others as `null`).
    init(_ json: JSON, datacenter: String) throws(DecodeError) {
        let op = try FieldReader(json, context: "operation")
        if let kv = try op.object("KV") {
            self = .kv(try KVTxnOp(kv))
        } else if let body = try op.object("Node") {
            let r = try body.object("Node") ?? FieldReader(JSONObject())
            let node = Node(id: try r.string("ID") ?? "", name: try r.string("Node") ?? "", address: try r.string("Address") ?? "",
                            datacenter: datacenter, taggedAddresses: try r.stringMap("TaggedAddresses") ?? [:],
                            meta: try r.stringMap("Meta") ?? [:])
            self = .node(try Self.verb(body, "Node"), node, index: try r.uint64("ModifyIndex") ?? 0)
        } else if let body = try op.object("Service") {
            let r = try body.object("Service") ?? FieldReader(JSONObject())
            let service = try ServiceFields.decode(r, node: try body.string("Node") ?? "", nameField: "Service")
            self = .service(try Self.verb(body, "Service"), ServiceFields.catalogWeights(service),
                            index: try r.uint64("ModifyIndex") ?? 0)
        } else if let body = try op.object("Check") {
            let r = try body.object("Check") ?? FieldReader(JSONObject())
            var check = try CheckFields.decode(r).catalogCheck(node: try r.string("Node") ?? "")
            check.output = try r.string("Output") ?? ""
            self = .check(try Self.verb(body, "Check"), check, index: try r.uint64("ModifyIndex") ?? 0)
        } else if let body = try op.object("Session") {
            let verb = try body.string("Verb") ?? ""
            guard verb == "delete" else { throw DecodeError("unknown Session verb \"\(verb)\"") }
            self = .deleteSession(id: try body.object("Session")?.string("ID") ?? "")
        } else {
            throw DecodeError("operation must have one of KV, Node, Service, Check or Session")
        }
    }

    private static func verb(_ body: FieldReader, _ kind: String) throws(DecodeError) -> CatalogVerb {
        let text = try body.string("Verb") ?? ""
        guard let verb = CatalogVerb(rawValue: text) else { throw DecodeError("unknown \(kind) verb \"\(text)\"") }
        return verb
    }
}

extension KVTxnOp {
    /// Reads the `KV` object of a transaction operation.
    init(_ kv: FieldReader) throws(DecodeError) {
        let verbText = try kv.string("Verb") ?? ""
        guard let verb = Verb(rawValue: verbText) else { throw DecodeError("unknown KV verb \"\(verbText)\"") }
        self.verb = verb
        key = try kv.string("Key") ?? ""
        guard let decoded = Base64.decode(try kv.string("Value") ?? "") else { throw DecodeError("Value must be base64") }
        guard decoded.count <= ConsulAPI.maxValueSize else {
            throw DecodeError("Value exceeds \(ConsulAPI.maxValueSize) byte limit")
        }
        value = decoded
        flags = try kv.uint64("Flags") ?? 0
        index = try kv.uint64("Index") ?? 0
        session = try kv.string("Session") ?? ""
        if key.isEmpty && verb != .getTree && verb != .deleteTree { throw DecodeError("Missing key name") }
    }
}
