import Foundation
import NIOCore
import TrellisCore
import TrellisHTTP

/// `/v1/kv/*`: Consul's KV store with CAS, locks and blocking reads.
extension ConsulAPI {
    /// Largest KV value, as in Consul.
    static let maxValueSize = 512 * 1024

    func kv(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        switch context.request.method {
        case .GET, .HEAD: kvGet(context)
        case .PUT, .POST: kvPut(context)
        case .DELETE: kvDelete(context)
        default: immediate(.text(.methodNotAllowed, "method \(context.request.method.rawValue) not allowed"), context)
        }
    }

    private func kvGet(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let key = context.rest
        let query = context.request.query
        guard let recurse = query.flag("recurse"), let keysOnly = query.flag("keys"), let raw = query.flag("raw") else {
            return badRequest("Invalid boolean query parameter", context)
        }
        let listing = recurse || keysOnly
        guard listing || !key.isEmpty else { return badRequest("Missing key name", context) }
        if !listing, let refused = refusal(context, .key, key, .read) { return refused }
        let separator = query["separator"] ?? ""
        let pretty = query.has("pretty")
        let acl = context.acl
        return BlockingQuery.run(context.request, catalog: catalog, key: RegistryState.kvWatchKey(key),
                                 indexOf: { $0.kvIndex(key, recurse: listing) }, acl: acl, on: context.loop,
                                 cancellation: context.cancellation) { state in
            acl.rendering {
                Self.kvRead(state, key: key, keysOnly: keysOnly, recurse: recurse, raw: raw, separator: separator, pretty: pretty, acl: acl)
            }
        }
    }

    /// The answer of a KV read: one entry, a subtree (`recurse`) or its keys (`keysOnly`), holding
    /// only what the token may read.
    private static func kvRead(_ state: borrowing RegistryState, key: String, keysOnly: Bool, recurse: Bool, raw: Bool,
                               separator: String, pretty: Bool, acl: RequestACL) -> HTTPResponse {
        if keysOnly {
            var seen = Set<String>()
            let keys = state.kvEntries(prefix: key).filter { acl.visible(.key, $0.key) }.map { entry -> String in
                guard !separator.isEmpty,
                      let range = entry.key.dropFirst(key.count).range(of: separator) else { return entry.key }
                return String(entry.key[..<range.upperBound])
            }.filter { seen.insert($0).inserted }
            return keys.isEmpty ? HTTPResponse(status: .notFound) : .json(JSON.strings(keys).serialized(pretty: pretty))
        }
        let entries = recurse ? state.kvEntries(prefix: key).filter { acl.visible(.key, $0.key) } : state.kvEntry(key).map { [$0] } ?? []
        guard let first = entries.first else { return HTTPResponse(status: .notFound) }
        if raw {
            var response = HTTPResponse(body: ByteBuffer(bytes: first.value))
            response.headers.add(name: "Content-Type", value: "application/octet-stream")
            response.headers.add(name: "X-Content-Type-Options", value: "nosniff")
            return response
        }
        return .json(JSON.array(entries.map { KVJSON.entry($0) }).serialized(pretty: pretty))
    }

    private func kvPut(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let key = context.rest
        let query = context.request.query
        guard !key.isEmpty else { return badRequest("Missing key name", context) }
        guard !key.hasPrefix("/") else { return badRequest("Invalid key name: keys must not begin with '/'", context) }
        if let refused = refusal(context, .key, key, .write) { return refused }
        let value = context.request.bodyBytes
        guard value.count <= Self.maxValueSize else {
            return immediate(.text(.payloadTooLarge, "Value exceeds \(Self.maxValueSize) byte limit"), context)
        }
        var flags: UInt64 = 0
        if let text = query["flags"], !text.isEmpty {
            guard let parsed = UInt64(text) else { return badRequest("Invalid flags: \"\(text)\"", context) }
            flags = parsed
        }
        var cas: UInt64?
        if let text = query["cas"], !text.isEmpty {
            guard let parsed = UInt64(text) else { return badRequest("Invalid cas: \"\(text)\"", context) }
            cas = parsed
        }
        let acquire = query["acquire"].flatMap { $0.isEmpty ? nil : $0 }
        let release = query["release"].flatMap { $0.isEmpty ? nil : $0 }
        if acquire != nil && release != nil { return badRequest("Conflicting flags: acquire and release", context) }
        let op: KVWrite = acquire.map { .lock(session: $0) } ?? release.map { .unlock(session: $0) } ?? .set
        return write(context, { [flags, cas] (state: inout RegistryState) throws(CatalogError) -> Bool in
            try state.applyKVWrite(key: key, value: value, flags: flags, cas: cas, op: op, now: .now)
        }, render: { Self.boolResponse($0) })
    }

    private func kvDelete(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let key = context.rest
        let query = context.request.query
        guard let recurse = query.flag("recurse") else { return badRequest("Invalid value for ?recurse", context) }
        guard recurse || !key.isEmpty else { return badRequest("Missing key name", context) }
        var cas: UInt64?
        if let text = query["cas"], !text.isEmpty {
            guard let parsed = UInt64(text) else { return badRequest("Invalid cas: \"\(text)\"", context) }
            cas = parsed
        }
        if recurse && cas != nil { return badRequest("Conflicting flags: cas and recurse", context) }
        if recurse, !context.authorizer.allowsKeyWritePrefix(key) {
            return immediate(.text(.forbidden, context.authorizer.denial(.key, key, .write)), context)
        }
        if !recurse, let refused = refusal(context, .key, key, .write) { return refused }
        return write(context, { [cas] (state: inout RegistryState) throws(CatalogError) -> Bool in
            if recurse {
                for entry in state.kvEntries(prefix: key) { state.deleteKV(entry.key) }
                return true
            }
            if let cas {
                guard let existing = state.kvEntry(key) else { return cas == 0 }
                guard existing.modifyIndex == cas else { return false }
            }
            state.deleteKV(key)
            return true
        }, render: { Self.boolResponse($0) })
    }

    static func boolResponse(_ value: Bool) -> HTTPResponse { .json(Array((value ? "true" : "false").utf8)) }
}
