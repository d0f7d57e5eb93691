import Foundation
import NIOCore
import TrellisCore
import TrellisHTTP

/// `/v1/session/*`: leases that hold KV locks.
extension ConsulAPI {
    static let minSessionTTL: Duration = .seconds(10)
    static let maxSessionTTL: Duration = .seconds(86_400)

    func sessionCreate(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        var session = Session(id: UUID().uuidString.lowercased(), node: identity.nodeName)
        var checksGiven = false
        if !context.request.bodyBytes.isEmpty {
            do {
                let r = try decodeBody(context)
                session.name = try r.string("Name") ?? ""
                if let node = try r.string("Node"), !node.isEmpty { session.node = node }
                if let behavior = try r.string("Behavior"), !behavior.isEmpty {
                    guard let parsed = Session.Behavior(rawValue: behavior) else {
                        return badRequest("Invalid Behavior setting '\(behavior)'", context)
                    }
                    session.behavior = parsed
                }
                if let delay = r.value("LockDelay") {
                    // Consul reads small numbers as seconds and large ones as nanoseconds.
                    if let number = delay.intValue {
                        session.lockDelay = number < 1000 ? .seconds(number) : .nanoseconds(number)
                    } else if let parsed = try r.duration("LockDelay") {
                        session.lockDelay = parsed
                    }
                }
                if let ttl = try r.duration("TTL"), ttl > .zero {
                    guard ttl >= Self.minSessionTTL && ttl <= Self.maxSessionTTL else {
                        return badRequest("Invalid Session TTL '\(GoDuration.format(ttl))', must be between [10s=24h0m0s]", context)
                    }
                    session.ttl = ttl
                }
                let legacy = try r.strings("Checks")
                let nodeChecks = try r.strings("NodeChecks")
                let serviceChecks = try r.objects("ServiceChecks")?.map { try $0.string("ID") ?? "" }
                checksGiven = legacy != nil || nodeChecks != nil || serviceChecks != nil
                session.nodeChecks = (legacy ?? []) + (nodeChecks ?? [])
                session.serviceChecks = serviceChecks ?? []
            } catch {
                return decodeFailed(error, context)
            }
        }
        if !checksGiven { session.nodeChecks = ["serfHealth"] }
        if let refused = refusal(context, .session, session.node, .write) { return refused }
        let created = session
        return write(context, { (state: inout RegistryState) throws(CatalogError) -> String in
            guard state.node(created.node) != nil else {
                throw .badRequest("Failed to create session: node '\(created.node)' not found")
            }
            for checkID in created.checkIDs {
                guard let check = state.check(CheckKey(node: created.node, checkID: checkID)) else {
                    throw .badRequest("Missing check '\(checkID)' registration")
                }
                if check.status == .critical { throw .badRequest("Check '\(checkID)' is in critical state") }
            }
            state.putSession(created, now: .now)
            return created.id
        }, render: { id in .json(JSON.object(JSONObject([("ID", .string(id))])).serialized()) })
    }

    func sessionDestroy(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let id = context.rest
        guard !id.isEmpty else { return badRequest("Missing session", context) }
        let authorizer = context.authorizer
        return write(context, { (state: inout RegistryState) throws(CatalogError) in
            if let session = state.session(id) { try authorizer.require(.session, session.node, .write) }
            state.destroySession(id, now: .now)
        }, render: { _ in Self.boolResponse(true) })
    }

    func sessionRenew(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let id = context.rest
        guard !id.isEmpty else { return badRequest("Missing session", context) }
        if let node = catalog.read({ $0.session(id)?.node }), let refused = refusal(context, .session, node, .write) { return refused }
        guard let session = catalog.renewSession(id) else {
            return immediate(.text(.notFound, "Session id '\(id)' not found"), context)
        }
        let body = JSON.array([KVJSON.session(session)]).serialized(pretty: context.request.query.has("pretty"))
        return immediate(.json(body), context)
    }

    func sessionInfo(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let id = context.rest
        guard !id.isEmpty else { return badRequest("Missing session", context) }
        return blockingJSON(context, key: WatchKey.sessions) { state in
            .array(state.session(id).flatMap { context.acl.visible(.session, $0.node) ? [KVJSON.session($0)] : nil } ?? [])
        }
    }

    func sessionNode(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let node = context.rest
        guard !node.isEmpty else { return badRequest("Missing node name", context) }
        return blockingJSON(context, key: WatchKey.sessions) { state in
            .array(state.allSessions.filter { $0.node == node && context.acl.visible(.session, $0.node) }.map(KVJSON.session))
        }
    }

    func sessionList(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        blockingJSON(context, key: WatchKey.sessions) { state in
            .array(state.allSessions.filter { context.acl.visible(.session, $0.node) }.map(KVJSON.session))
        }
    }
}

/// Ends TTL sessions that were not renewed within twice their TTL (Consul's grace).
final class SessionExpiry: Sendable {
    private let task: RepeatedTask

    init(catalog: Catalog, loop: any EventLoop) {
        task = loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .milliseconds(500)) { _ in
            let now = ContinuousClock.now
            let expired = catalog.read { $0.expiredSessions(at: now) }
            guard !expired.isEmpty else { return }
            catalog.write({ (state: inout RegistryState) throws(CatalogError) in
                for id in expired { state.destroySession(id, now: now) }
            }, completion: { _ in })
        }
    }

    func stop() { task.cancel() }
}
