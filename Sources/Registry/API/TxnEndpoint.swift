import NIOCore
import TrellisCore
import TrellisHTTP

/// `PUT /v1/txn`: up to 64 KV operations applied all together or not at all.
extension ConsulAPI {
    static let maxTxnOps = 64

    func txn(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let ops: [TxnOp]
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
            ops = try items.map(TxnOp.init)
        } catch {
            return decodeFailed(error, context)
        }
        let pretty = context.request.query.has("pretty")
        return write(context, { (state: inout CatalogState) throws(CatalogError) -> TxnOutcome in
            state.applyTxn(ops, now: .now)
        }, render: { outcome in
            switch outcome {
            case .committed(let results):
                let body = JSON.object(JSONObject([("Results", .array(results.map { .object(JSONObject([("KV", $0)])) })),
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

extension TxnOp {
    /// Reads one operation of a `PUT /v1/txn` body.
    init(_ json: JSON) throws(DecodeError) {
        let op = try FieldReader(json, context: "operation")
        guard let kv = try op.object("KV") else {
            throw DecodeError("only KV operations are supported in transactions")
        }
        let verbText = try kv.string("Verb") ?? ""
        guard let verb = Verb(rawValue: verbText) else { throw DecodeError("unknown KV verb \"\(verbText)\"") }
        self.verb = verb
        key = try kv.string("Key") ?? ""
        guard let decoded = Base64.decode(try kv.string("Value") ?? "") else { throw DecodeError("Value must be base64") }
        guard decoded.count <= ConsulAPI.maxValueSize else {
            throw DecodeError("Value exceeds \(ConsulAPI.maxValueSize) byte limit")
        }
        value = decoded
        flags = UInt64(bitPattern: Int64(try kv.int("Flags") ?? 0))
        index = try kv.uint64("Index") ?? 0
        session = try kv.string("Session") ?? ""
        if key.isEmpty && verb != .getTree && verb != .deleteTree { throw DecodeError("Missing key name") }
    }
}
