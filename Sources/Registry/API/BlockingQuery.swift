import NIOCore
import NIOHTTP1
import Synchronization
import TrellisCore
import TrellisHTTP

/// `?index=` and `?wait=` of a read, checked the way Consul checks them.
struct BlockingParameters {
    static let defaultWait: TimeAmount = .minutes(5)
    static let maxWait: TimeAmount = .minutes(10)

    let minIndex: UInt64
    /// `?hash=`: the content hash the client already has (hash-based blocking of agent endpoints).
    let minHash: String?
    let wait: TimeAmount

    init(_ query: QueryParameters) throws(CatalogError) {
        minHash = query["hash"].flatMap { $0.isEmpty ? nil : $0 }
        if let text = query["index"], !text.isEmpty {
            guard let index = UInt64(text) else { throw .badRequest("Invalid index") }
            minIndex = index
        } else {
            minIndex = 0
        }
        var wait = Self.defaultWait
        if let text = query["wait"], !text.isEmpty {
            guard let nanos = GoDuration.parseNanoseconds(text), nanos >= 0 else { throw .badRequest("Invalid wait time") }
            wait = .nanoseconds(nanos)
        }
        wait = min(wait, Self.maxWait)
        if wait == .zero { wait = Self.defaultWait }
        // Consul adds up to wait/16 of jitter so that watchers woken together spread out.
        let jitter = wait.nanoseconds / 16
        self.wait = wait + .nanoseconds(jitter > 0 ? Int64.random(in: 0...jitter) : 0)
    }
}

/// A read that may long-poll: answered at once when its data is newer than `?index=`, else parked
/// on its watch key until that key changes or the wait runs out.
final class BlockingQuery: @unchecked Sendable {
    typealias Render = @Sendable (borrowing RegistryState) -> HTTPResponse
    /// The index of the data a query reads (`X-Consul-Index`), from a snapshot.
    typealias IndexOf = @Sendable (borrowing RegistryState) -> UInt64

    private let catalog: Catalog
    private let key: String
    /// Further keys whose changes wake the query too (reads that span several tables).
    private let alsoKeys: [String]
    private let cacheKey: String
    private let indexOf: IndexOf
    private let render: Render
    private let loop: any EventLoop
    private let deadlines: DeadlineSweep
    private let promise: EventLoopPromise<HTTPResponse>
    private let wanted: Version
    /// `?cached`: the answer says whether it came from the cache (`X-Cache`, `Age`), as Consul's agent cache does.
    private let reportsCache: Bool
    /// The request's token, re-resolved at each rendering; nil: no ACL checks.
    private let acl: RequestACL?
    // Touched only on `loop`.
    private var tokens: [WatchHub.Token] = []
    private var done = false
    /// The body the client already has (rendered when the query parked): an answer that leaves out
    /// what the token may not read and renders that same body changed nothing the token can see,
    /// and does not end the wait.
    private var parkedBody: ByteBuffer?

    /// What the client already has: an index (`?index=`) or a content hash (`?hash=`).
    enum Version {
        case index(UInt64)
        case hash(String)
    }

    private init(catalog: Catalog, key: String, alsoKeys: [String], cacheKey: String, indexOf: @escaping IndexOf, wanted: Version,
                 reportsCache: Bool, acl: RequestACL?, loop: any EventLoop, render: @escaping Render) {
        self.alsoKeys = alsoKeys
        self.reportsCache = reportsCache
        self.acl = acl
        self.catalog = catalog
        self.key = key
        self.cacheKey = cacheKey
        self.indexOf = indexOf
        self.wanted = wanted
        self.loop = loop
        self.deadlines = DeadlineSweep.on(loop)
        self.render = render
        self.promise = loop.makePromise()
    }

    /// Runs a read parked on watch `key`, blocking per the request's parameters; `indexOf` gives the
    /// read's index (by default the key's own), `render` builds the body from a snapshot. With
    /// `hashed`, `?hash=` blocks until the `X-Consul-ContentHash` that `render` sets differs, as
    /// Consul's agent endpoints do. `alsoKeys` wake it too.
    /// With `acl`, each rendering first re-resolves the token (an answer for a deleted token is
    /// Consul's 403 `ACL not found`) and ACL changes wake the query too.
    static func run(_ request: HTTPRequest, catalog: Catalog, key: String, alsoKeys: [String] = [], indexOf: IndexOf? = nil,
                    hashed: Bool = false,
                    acl: RequestACL? = nil, on loop: any EventLoop, cancellation: CancellationSignal,
                    render: @escaping Render) -> EventLoopFuture<HTTPResponse> {
        let indexOf = indexOf ?? { $0.watchIndex(key) }
        let parameters: BlockingParameters
        do {
            parameters = try BlockingParameters(request.query)
        } catch {
            return loop.makeSucceededFuture(.text(.badRequest, error.description))
        }
        let cacheKey = ResponseCache.key(for: request)
        let acl = acl?.enabled == true ? acl : nil
        let reportsCache = request.query.has("cached")
        let wanted: Version
        switch (hashed, parameters.minHash) {
        case (true, let hash?): wanted = .hash(hash)
        case (false, _) where parameters.minIndex != 0: wanted = .index(parameters.minIndex)
        default:
            let now = snapshot(catalog, cacheKey, acl, indexOf, render)
            return loop.makeSucceededFuture(reportsCache ? withCacheHeaders(now) : now.response)
        }
        let query = BlockingQuery(catalog: catalog, key: key, alsoKeys: alsoKeys, cacheKey: cacheKey, indexOf: indexOf,
                                  wanted: wanted, reportsCache: reportsCache, acl: acl, loop: loop, render: render)
        loop.execute {
            query.deadlines.add(ObjectIdentifier(query), deadline: .now() + parameters.wait) {
                query.finish(query.snapshot())
            }
            query.evaluate()
        }
        cancellation.onCancel { loop.execute { query.finish(nil) } }
        return query.promise.futureResult
    }

    /// A read's answer, its index, and when the cached rendering it reuses was made (nil when fresh).
    typealias Snapshot = (index: UInt64, response: HTTPResponse, cachedAt: ContinuousClock.Instant?)

    private func snapshot() -> Snapshot {
        Self.snapshot(catalog, cacheKey, acl, indexOf, render)
    }

    /// Renders the read, or reuses the last rendering of the same request (and token) while its index is unchanged.
    private static func snapshot(_ catalog: Catalog, _ cacheKey: String, _ acl: RequestACL?, _ indexOf: IndexOf,
                                 _ render: Render) -> Snapshot {
        catalog.read { state in
            let index = max(indexOf(state), 1)
            var cacheKey = cacheKey
            if let acl {
                guard acl.refresh(state) else { return (index, .text(.forbidden, "ACL not found"), nil) }
                cacheKey += acl.cacheTag
            }
            if let cached = catalog.responses.lookup(cacheKey, index: index) { return (index, cached.response, cached.stored) }
            var response = render(state)
            ConsulHeaders.addQueryMeta(&response.headers, index: index)
            catalog.responses.store(cacheKey, index: index, response: response)
            return (index, response, nil)
        }
    }

    /// `X-Cache: HIT` with `Age` in whole seconds, or `X-Cache: MISS`.
    private static func withCacheHeaders(_ snapshot: Snapshot) -> HTTPResponse {
        var response = snapshot.response
        if let cachedAt = snapshot.cachedAt {
            response.headers.replaceOrAdd(name: "X-Cache", value: "HIT")
            response.headers.replaceOrAdd(name: "Age", value: String((ContinuousClock.now - cachedAt).components.seconds))
        } else {
            response.headers.replaceOrAdd(name: "X-Cache", value: "MISS")
        }
        return response
    }

    /// Reads; when nothing changed, parks and reads again, so that a change landing in between is never missed.
    private func evaluate() {
        guard !done else { return }
        let first = snapshot()
        if changed(first) { return finish(first) }
        if acl != nil, parkedBody == nil { parkedBody = first.response.body }
        for token in tokens { catalog.hub.cancel(token) }
        tokens = ([key] + alsoKeys + (acl == nil ? [] : [WatchKey.acl])).map { key in
            catalog.hub.wait(on: key, loop: loop) { self.evaluate() }
        }
        let second = snapshot()
        if changed(second) { finish(second) }
    }

    private func changed(_ snapshot: Snapshot) -> Bool {
        if snapshot.response.status != .ok && snapshot.response.status != .notFound { return true }
        if let parkedBody, snapshot.response.headers.contains(name: ConsulHeaders.filteredByACLs),
           snapshot.response.body == parkedBody { return false }
        return switch wanted {
        case .index(let index): snapshot.index != index
        case .hash(let hash): snapshot.response.headers.first(name: ConsulHeaders.contentHash) != hash
        }
    }

    private func finish(_ snapshot: Snapshot?) {
        guard !done else { return }
        done = true
        deadlines.remove(ObjectIdentifier(self))
        for token in tokens { catalog.hub.cancel(token) }
        guard let snapshot else { return promise.succeed(.text(.requestTimeout, "client went away")) }
        promise.succeed(reportsCache ? Self.withCacheHeaders(snapshot) : snapshot.response)
    }
}

/// The query-meta headers Consul puts on every blocking-capable read.
enum ConsulHeaders {
    static let contentHash = "X-Consul-ContentHash"
    /// Set on answers that left out what the request's token may not read.
    static let filteredByACLs = "X-Consul-Results-Filtered-By-ACLs"

    /// A content hash of rendered bytes (FNV-1a, 16 hex digits at most), for `ContentHash` and its header.
    static func contentHash(of bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return String(hash, radix: 16)
    }

    static func addQueryMeta(_ headers: inout HTTPHeaders, index: UInt64) {
        headers.add(name: "X-Consul-Index", value: String(max(index, 1)))
        headers.add(name: "X-Consul-KnownLeader", value: "true")
        headers.add(name: "X-Consul-LastContact", value: "0")
        headers.add(name: "X-Consul-Effective-Consistency", value: "leader")
    }
}

/// Ends the waits of parked queries on one event loop by sweeping their deadlines a few times a second.
///
/// A sweep costs a pass over the parked queries; an NIO timer per query would instead make every
/// early answer pay a linear removal from the loop's timer heap, which dominates at 10,000 waiters.
final class DeadlineSweep: @unchecked Sendable {
    private static let interval: TimeAmount = .milliseconds(100)
    private static let sweeps = Mutex<[ObjectIdentifier: DeadlineSweep]>([:])

    private let loop: any EventLoop
    // Touched only on `loop`.
    private var entries: [ObjectIdentifier: (deadline: NIODeadline, expire: () -> Void)] = [:]

    private init(loop: any EventLoop) {
        self.loop = loop
        loop.scheduleRepeatedTask(initialDelay: Self.interval, delay: Self.interval) { _ in self.sweep() }
    }

    /// The sweep of `loop`, created on first use.
    static func on(_ loop: any EventLoop) -> DeadlineSweep {
        sweeps.withLock { sweeps in
            if let existing = sweeps[ObjectIdentifier(loop)] { return existing }
            let created = DeadlineSweep(loop: loop)
            sweeps[ObjectIdentifier(loop)] = created
            return created
        }
    }

    func add(_ id: ObjectIdentifier, deadline: NIODeadline, expire: @escaping () -> Void) {
        loop.preconditionInEventLoop()
        entries[id] = (deadline, expire)
    }

    func remove(_ id: ObjectIdentifier) {
        loop.preconditionInEventLoop()
        entries[id] = nil
    }

    private func sweep() {
        guard !entries.isEmpty else { return }
        let now = NIODeadline.now()
        var due: [ObjectIdentifier] = []
        for (id, entry) in entries where entry.deadline <= now { due.append(id) }
        for id in due {
            entries.removeValue(forKey: id)?.expire()
        }
    }
}
