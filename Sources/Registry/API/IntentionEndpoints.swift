import Foundation
import NIOCore
import TrellisCore
import TrellisHTTP

/// `/v1/connect/intentions*` and `/v1/agent/connect/authorize`: which service may call which, with
/// Consul's paths, shapes, precedence and messages (default namespace only, L4 intentions).
extension ConsulAPI {
    /// Consul's limits on an intention's opaque fields.
    static let intentionDescriptionLimit = 512
    static let intentionMetaPairsLimit = 64
    static let intentionMetaKeyLimit = 128

    /// `GET /v1/connect/intentions` (blocking, `?filter`) and `POST` (create with an ID, Consul's legacy form).
    func intentions(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        guard context.request.method == .POST else {
            return blockingJSON(context, key: WatchKey.intentions) { state in
                .array(state.allIntentions.filter { context.acl.visible(.intention, $0.destinationName) }.map(Self.intentionJSON))
            }
        }
        var intention: Intention
        do { intention = try Self.intention(from: try decodeBody(context)) } catch { return decodeFailed(error, context) }
        if let refused = refusal(context, .intention, intention.destinationName, .write) { return refused }
        intention.id = UUID().uuidString.lowercased()
        let now = Self.timestamp()
        return write(context, { [intention] (state: inout RegistryState) throws(CatalogError) in
            try state.createIntention(intention, now: now)
        }, render: { [id = intention.id] in .json(JSON.object(JSONObject([("ID", .string(id))])).serialized()) })
    }

    /// `GET|PUT|DELETE /v1/connect/intentions/exact?source=&destination=`.
    func intentionExact(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let source: String, destination: String
        do {
            source = try Self.serviceParameter("source", context.request.query)
            destination = try Self.serviceParameter("destination", context.request.query)
        } catch { return badRequest(error.description, context) }
        if let refused = refusal(context, .intention, destination, context.request.method == .GET ? .read : .write) { return refused }
        switch context.request.method {
        case .PUT:
            var intention: Intention
            do {
                let body = try decodeBody(context)
                var fields = body.object
                fields.pairs.removeAll { ["sourcename", "destinationname", "meta"].contains($0.key.lowercased()) }
                fields.append("SourceName", .string(source))
                fields.append("DestinationName", .string(destination))
                intention = try Self.intention(from: FieldReader(fields))
            } catch { return decodeFailed(error, context) }
            intention.id = ""
            let now = Self.timestamp()
            return write(context, { [intention] (state: inout RegistryState) throws(CatalogError) in
                state.upsertIntention(intention, now: now)
            }, render: { _ in Self.boolResponse(true) })
        case .DELETE:
            return write(context, { (state: inout RegistryState) throws(CatalogError) in
                state.deleteIntention(source: source, destination: destination)
            }, render: { _ in Self.boolResponse(true) })
        default:
            return BlockingQuery.run(context.request, catalog: catalog, key: WatchKey.intentions, on: context.loop,
                                     cancellation: context.cancellation) { [pretty = context.request.query.has("pretty")] state in
                guard let intention = state.intention(source: source, destination: destination) else {
                    return .text(.notFound, "Intention not found")
                }
                return .json(Self.intentionJSON(intention).serialized(pretty: pretty))
            }
        }
    }

    /// `GET|PUT|DELETE /v1/connect/intentions/:id` (intentions created with an ID).
    func intentionByID(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let id = context.rest
        switch context.request.method {
        case .PUT:
            let intention: Intention
            do { intention = try Self.intention(from: try decodeBody(context)) } catch { return decodeFailed(error, context) }
            let now = Self.timestamp()
            let authorizer = context.authorizer
            return write(context, { (state: inout RegistryState) throws(CatalogError) in
                try authorizer.require(.intention, intention.destinationName, .write)
                if let existing = state.intention(id: id) { try authorizer.require(.intention, existing.destinationName, .write) }
                try state.updateIntention(id: id, with: intention, now: now)
            }, render: { _ in HTTPResponse(status: .ok) })
        case .DELETE:
            let authorizer = context.authorizer
            return write(context, { (state: inout RegistryState) throws(CatalogError) in
                if let existing = state.intention(id: id) { try authorizer.require(.intention, existing.destinationName, .write) }
                try state.deleteIntention(id: id)
            }, render: { _ in HTTPResponse(status: .ok) })
        default:
            let authorizer = context.authorizer
            return BlockingQuery.run(context.request, catalog: catalog, key: WatchKey.intentions, acl: context.acl, on: context.loop,
                                     cancellation: context.cancellation) { [pretty = context.request.query.has("pretty")] state in
                guard let intention = state.intention(id: id) else { return .text(.notFound, "Intention not found") }
                guard authorizer.allows(.intention, intention.destinationName, .read) else {
                    return .text(.forbidden, authorizer.denial(.intention, intention.destinationName, .read))
                }
                return .json(Self.intentionJSON(intention).serialized(pretty: pretty))
            }
        }
    }

    /// `GET /v1/connect/intentions/match?by=source|destination&name=…`: per name, the intentions that
    /// apply to it, in evaluation order.
    func intentionMatch(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let query = context.request.query
        let by = query.all("by")
        guard by.count == 1 else { return badRequest("required query parameter 'by' not set", context) }
        guard by[0] == "source" || by[0] == "destination" else {
            return badRequest("'by' parameter must be one of 'source' or 'destination'", context)
        }
        let names = query.all("name")
        guard !names.isEmpty else { return badRequest("required query parameter 'name' not set", context) }
        var services: [String] = []
        for name in names {
            do { services.append(try Self.serviceName(name)) } catch {
                return badRequest("name \(JSON.string(name).text) is invalid: \(error.description)", context)
            }
        }
        let bySource = by[0] == "source"
        return blockingJSON(context, key: WatchKey.intentions) { [services] state in
            var matches = JSONObject([])
            for (name, service) in zip(names, services) {
                matches.append(name, .array(state.matchingIntentions(bySource: bySource, name: service)
                    .filter { context.acl.visible(.intention, $0.destinationName) }.map(Self.intentionJSON)))
            }
            return .object(matches)
        }
    }

    /// `GET /v1/connect/intentions/check?source=&destination=`: `{"Allowed": …}`.
    func intentionCheck(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let source: String, destination: String
        do {
            source = try Self.serviceParameter("source", context.request.query)
            destination = try Self.serviceParameter("destination", context.request.query)
        } catch { return badRequest(error.description, context) }
        if let type = context.request.query["source-type"], !type.isEmpty, type != "consul" {
            return badRequest("unsupported source-type \(JSON.string(type).text): only \"consul\" sources exist", context)
        }
        if let refused = refusal(context, .service, destination, .read) { return refused }
        let (allowed, _) = authorize(source: source, destination: destination)
        return immediate(json(.object(JSONObject([("Allowed", .bool(allowed))])), context), context)
    }

    /// `POST /v1/agent/connect/authorize`: may the holder of `ClientCertURI` connect to `Target`?
    func agentConnectAuthorize(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let target: String, uri: String
        do {
            let body = try decodeBody(context)
            target = try body.string("Target") ?? ""
            uri = try body.string("ClientCertURI") ?? ""
        } catch { return decodeFailed(error, context) }
        guard !target.isEmpty else { return badRequest("Target service must be specified", context) }
        guard !uri.isEmpty else { return badRequest("ClientCertURI must be specified", context) }
        if let refused = refusal(context, .service, target, .write) { return refused }
        guard let identity = SPIFFEServiceID(uri) else {
            return badRequest("ClientCertURI must be a valid Service identifier", context)
        }
        let (allowed, reason) = authorize(source: identity.service, destination: target)
        return immediate(json(.object(JSONObject([("Authorized", .bool(allowed)), ("Reason", .string(reason))])), context), context)
    }

    /// The decision on a connection from `source` to `destination` and why, as Consul words it.
    func authorize(source: String, destination: String) -> (allowed: Bool, reason: String) {
        catalog.read { authorize(source: source, destination: destination, in: $0) }
    }

    /// `authorize` within a snapshot the caller already reads.
    func authorize(source: String, destination: String, in state: borrowing RegistryState) -> (allowed: Bool, reason: String) {
        if let intention = state.decidingIntention(source: source, destination: destination) {
            return (intention.action == .allow, "Matched L4 intention: \(intention.summary)")
        }
        guard let policy = identity.defaultIntentionPolicy else {
            return (defaultIntentionAllows, "Default behavior configured by ACLs")
        }
        return (policy == .allow, "Default intention policy")
    }

    /// Whether intentions allow a call that no intention matches.
    var defaultIntentionAllows: Bool {
        if let policy = identity.defaultIntentionPolicy { return policy == .allow }
        return !aclResolver.settings.enabled || aclResolver.settings.defaultAllows
    }

    // MARK: Shapes

    static func intentionJSON(_ intention: Intention) -> JSON {
        let zeroTime = "0001-01-01T00:00:00Z"
        return .object(JSONObject([
            ("ID", .string(intention.id)), ("Description", .string(intention.description)),
            ("SourceNS", .string("default")), ("SourceName", .string(intention.sourceName)),
            ("DestinationNS", .string("default")), ("DestinationName", .string(intention.destinationName)),
            ("SourceType", .string(intention.sourceType)), ("Action", .string(intention.action.rawValue)),
            ("Meta", .stringMap(intention.meta)), ("Precedence", .int(Int64(intention.precedence))),
            ("CreatedAt", .string(intention.createdAt.isEmpty ? zeroTime : intention.createdAt)),
            ("UpdatedAt", .string(intention.updatedAt.isEmpty ? zeroTime : intention.updatedAt)),
            ("CreateIndex", .unsigned(intention.createIndex)), ("ModifyIndex", .unsigned(intention.modifyIndex)),
        ]))
    }

    /// An intention from a request body, checked as Consul's `Intention.Validate` checks it.
    static func intention(from body: FieldReader) throws(DecodeError) -> Intention {
        let source = try body.string("SourceName") ?? ""
        let destination = try body.string("DestinationName") ?? ""
        for (field, value) in [("SourceName", source), ("DestinationName", destination)] {
            guard !value.isEmpty else { throw DecodeError("\(field) must be set") }
            if value != Intention.wildcard, value.contains("*") {
                throw DecodeError("\(field): wildcard character '*' cannot be used with partial values")
            }
            guard value.utf8.count <= 256, !value.contains("/") else { throw DecodeError("\(field): invalid service name \(JSON.string(value).text)") }
        }
        for field in ["SourceNS", "DestinationNS"] {
            if let ns = try body.string(field), !ns.isEmpty, ns != "default" {
                throw DecodeError("\(field) must be \"default\": this registry has no namespaces")
            }
        }
        guard let actionText = try body.string("Action"), let action = IntentionAction(rawValue: actionText) else {
            throw DecodeError("Action must be set to 'allow' or 'deny'")
        }
        if let permissions = body.value("Permissions"), permissions.arrayValue?.isEmpty != true {
            throw DecodeError("Permissions (L7 intentions) are not supported; set routes and limits in the sidecar policy")
        }
        var intention = Intention(source: source, destination: destination, action: action)
        let sourceType = try body.string("SourceType") ?? ""
        guard sourceType.isEmpty || sourceType == "consul" else { throw DecodeError("SourceType must be set to 'consul'") }
        intention.description = try body.string("Description") ?? ""
        guard intention.description.utf8.count <= intentionDescriptionLimit else {
            throw DecodeError("Description exceeds maximum length \(intentionDescriptionLimit)")
        }
        intention.meta = try body.stringMap("Meta") ?? [:]
        guard intention.meta.count <= intentionMetaPairsLimit else {
            throw DecodeError("Meta exceeds maximum element count \(intentionMetaPairsLimit)")
        }
        for (key, value) in intention.meta {
            guard key.utf8.count <= intentionMetaKeyLimit else {
                throw DecodeError("Meta key \(JSON.string(key).text) exceeds maximum length \(intentionMetaKeyLimit)")
            }
            guard value.utf8.count <= intentionDescriptionLimit else {
                throw DecodeError("Meta value for key \(JSON.string(key).text) exceeds maximum length \(intentionDescriptionLimit)")
            }
        }
        return intention
    }

    /// A required `source`/`destination` query parameter as a service name (`name` or `default/name`).
    private static func serviceParameter(_ name: String, _ query: QueryParameters) throws(CatalogError) -> String {
        let values = query.all(name)
        guard values.count == 1, !values[0].isEmpty else { throw .badRequest("required query parameter '\(name)' not set") }
        do { return try serviceName(values[0]) } catch {
            throw .badRequest("\(name) \(JSON.string(values[0]).text) is invalid: \(error.description)")
        }
    }

    /// `name` or `default/name`; other namespaces do not exist here.
    private static func serviceName(_ text: String) throws(DecodeError) -> String {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        switch parts.count {
        case 1: return text
        case 2 where parts[0] == "default" && !parts[1].isEmpty: return String(parts[1])
        case 2: throw DecodeError("namespace \(JSON.string(String(parts[0])).text) does not exist (only \"default\")")
        default: throw DecodeError("input can contain at most one '/'")
        }
    }

    private static func timestamp() -> String { Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(Date()) }
}
