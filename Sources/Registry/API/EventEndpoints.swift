import Foundation
import NIOCore
import Synchronization
import TrellisCore
import TrellisHTTP

/// A user event (`/v1/event/fire/:name`), as Consul's agent keeps it.
struct UserEvent: Sendable {
    let id: String
    let name: String
    let payload: [UInt8]
    let nodeFilter: String
    let serviceFilter: String
    let tagFilter: String
    var lTime: UInt64 = 0

    var json: JSON {
        .object(JSONObject([
            ("ID", .string(id)), ("Name", .string(name)),
            ("Payload", payload.isEmpty ? .null : .string(Base64.encode(payload))),
            ("NodeFilter", .string(nodeFilter)), ("ServiceFilter", .string(serviceFilter)),
            ("TagFilter", .string(tagFilter)), ("Version", .int(1)), ("LTime", .unsigned(lTime)),
        ]))
    }

    /// Consul's event-list index: the last event's ID folded to 64 bits (`uuidToUint64`); it is not
    /// monotonic, so a blocking list waits while the client's index equals it.
    var index: UInt64 {
        let hex = Array(id.replacingOccurrences(of: "-", with: ""))
        guard hex.count == 32, let low = UInt64(String(hex[0..<16]), radix: 16),
              let high = UInt64(String(hex[16..<32]), radix: 16) else { return 1 }
        return low ^ high
    }
}

/// The events this registry received: the last 256, as Consul's agent keeps them, in memory only.
final class UserEvents: Sendable {
    static let capacity = 256
    /// Largest payload, as Consul's `UserEventSizeLimit`.
    static let payloadLimit = 512

    private struct State {
        var events: [UserEvent] = []
        var lTime: UInt64 = 0
        var waiters: [EventLoopPromise<Void>] = []
    }
    private let state = Mutex(State())

    func record(_ event: UserEvent) {
        let woken = state.withLock { state -> [EventLoopPromise<Void>] in
            var event = event
            state.lTime += 1
            event.lTime = state.lTime
            state.events.append(event)
            if state.events.count > Self.capacity { state.events.removeFirst(state.events.count - Self.capacity) }
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        woken.forEach { $0.succeed() }
    }

    var all: [UserEvent] { state.withLock { $0.events } }

    /// Completes on the next recorded event.
    func next(on loop: any EventLoop) -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        state.withLock { $0.waiters.append(promise) }
        return promise.futureResult
    }
}

/// `/v1/event/*`: Consul's user events, fired to and listed by this registry.
extension ConsulAPI {
    func eventFire(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let name = context.rest
        guard !name.isEmpty else { return badRequest("Missing name", context) }
        if let refused = refusal(context, .event, name, .write) { return refused }
        let query = context.request.query
        let payload = context.request.bodyBytes
        guard payload.count <= UserEvents.payloadLimit else {
            return immediate(.text(.payloadTooLarge, "User event payload exceeds the limit of \(UserEvents.payloadLimit) bytes"), context)
        }
        let event = UserEvent(id: UUID().uuidString.lowercased(), name: name, payload: payload,
                              nodeFilter: query["node"] ?? "", serviceFilter: query["service"] ?? "", tagFilter: query["tag"] ?? "")
        if !event.tagFilter.isEmpty && event.serviceFilter.isEmpty {
            return immediate(.text(.internalServerError, "Cannot provide tag filter without service filter"), context)
        }
        for (what, pattern) in [("node", event.nodeFilter), ("service", event.serviceFilter), ("tag", event.tagFilter)]
        where !pattern.isEmpty && (try? NSRegularExpression(pattern: pattern)) == nil {
            return immediate(.text(.internalServerError, "Invalid \(what) filter: \(pattern)"), context)
        }
        if accepts(event) { events.record(event) }
        return immediate(json(event.json, context), context)
    }

    /// `GET /v1/event/list?name=`: the events received, oldest first; blocks on `?index=`.
    func eventList(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let parameters: BlockingParameters
        do { parameters = try BlockingParameters(context.request.query) } catch {
            return badRequest(error.description, context)
        }
        let name = context.request.query["name"] ?? ""
        let pretty = context.request.query.has("pretty")
        let authorizer = context.authorizer
        let answer: @Sendable () -> (UInt64, HTTPResponse) = { [events] in
            let matching = events.all.filter { name.isEmpty || $0.name == name }
            let listed = matching.filter { authorizer.allows(.event, $0.name, .read) }
            let index = matching.last?.index ?? 1
            var response = HTTPResponse.json(JSON.array(listed.map(\.json)).serialized(pretty: pretty))
            if listed.count < matching.count { response.headers.add(name: ConsulHeaders.filteredByACLs, value: "true") }
            ConsulHeaders.addQueryMeta(&response.headers, index: index)
            return (index, response)
        }
        let (index, response) = answer()
        guard parameters.minIndex != 0, index == parameters.minIndex else { return immediate(response, context) }
        let loop = context.loop
        let promise = loop.makePromise(of: HTTPResponse.self)
        let done = NIOLoopBoundBox(false, eventLoop: loop)
        @Sendable func finish(_ response: HTTPResponse) {
            guard !done.value else { return }
            done.value = true
            promise.succeed(response)
        }
        let timeout = loop.scheduleTask(in: parameters.wait) { finish(answer().1) }
        @Sendable func park() {
            events.next(on: loop).whenSuccess {
                guard !done.value else { return }
                let (index, response) = answer()
                if index == parameters.minIndex { return park() }
                timeout.cancel()
                finish(response)
            }
        }
        loop.execute { park() }
        context.cancellation.onCancel {
            loop.execute {
                timeout.cancel()
                finish(.text(.requestTimeout, "client went away"))
            }
        }
        return promise.futureResult
    }

    /// Whether this registry's node is among an event's recipients (its node, service and tag filters).
    private func accepts(_ event: UserEvent) -> Bool {
        func matches(_ pattern: String, _ text: String) -> Bool {
            guard let regex = try? NSRegularExpression(pattern: pattern) else { return false }
            return regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
        }
        if !event.nodeFilter.isEmpty && !matches(event.nodeFilter, identity.nodeName) { return false }
        guard !event.serviceFilter.isEmpty else { return true }
        let services = catalog.read { $0.instances(onNode: identity.nodeName) }
        return services.contains { service in
            matches(event.serviceFilter, service.name)
                && (event.tagFilter.isEmpty || service.tags.contains { matches(event.tagFilter, $0) })
        }
    }
}
