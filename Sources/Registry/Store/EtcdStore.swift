import Logging
import Synchronization
import TrellisCore
import TrellisHTTP

/// The shared store: the registries of one cluster keep their records in etcd, under one key prefix.
///
/// Each record is the key `<prefix><table>/<key>`. Every commit rewrites `<prefix>meta/index`, so that
/// key's mod_revision is the revision of the last commit, and a commit is an etcd transaction on the
/// condition that it has not moved since the state the write was computed on. A registry that lost
/// that race has missed another's commit: it waits for its watch to bring it in and computes the
/// write again. Every registry applies the commits of the others from the watch, in etcd's order; a
/// registry applies its own commit at once when nothing came in since the state it computed it on
/// (which the condition guarantees up to commits that followed), else when the watch brings it. A
/// write is acknowledged once etcd has committed it and this registry has applied it.
///
/// Session renewals are not writes: they touch `<prefix>renew/<session>` (outside the index) so that
/// every registry extends the session's deadline.
public final class EtcdStore: Store {
    /// etcd's default `--max-txn-ops`: the most operations one transaction may carry.
    static let maxTxnOps = 128
    /// Bytes of keys and values per transaction, under etcd's default `--max-request-bytes` (1.5 MiB)
    /// once the gateway's base64 has grown them by a third.
    static let maxTxnBytes = 1 << 20

    private struct Applied {
        var revision: Int64 = 0
        var waiters: [UInt64: (revision: Int64, resume: CheckedContinuation<Void, Never>, timeout: Task<Void, Never>)] = [:]
        var nextWaiter: UInt64 = 0
    }

    private let client: EtcdClient
    private let prefix: [UInt8]
    private let logger: Logger
    private let queue = GroupCommitQueue<QueuedWrite>()
    private let applied = Mutex(Applied())
    private let onCommit: @Sendable (_ seconds: Double, _ batches: Int) -> Void
    /// Applies the other registries' commits from the time the store is opened until it is closed.
    private let follower = Mutex<Task<Void, Never>?>(nil)

    /// - Parameters:
    ///   - endpoints: client addresses of the etcd cluster's members.
    ///   - prefix: where this registry cluster's keys live (several clusters may share one etcd).
    ///   - onCommit: observes each transaction's latency and how many writes it carried.
    public init(endpoints: [(host: String, port: Int)], prefix: String, http: HTTPClient, logger: Logger,
                onCommit: @escaping @Sendable (Double, Int) -> Void = { _, _ in }) {
        client = EtcdClient(endpoints: endpoints, http: http)
        self.prefix = Array(prefix.utf8)
        self.logger = logger
        self.onCommit = onCommit
    }

    /// The etcd cluster's members, for `/v1/operator/raft/configuration`.
    public func members() async throws -> [JSON]? { try await client.members() }

    public var kind: String { "etcd" }

    public func open(_ catalog: Catalog) async throws {
        let loaded = try await load(into: catalog)
        let task = Task { await follow(catalog, after: loaded) }
        follower.withLock { $0 = task }
    }

    public func close() {
        follower.withLock { $0?.cancel() }
    }

    /// Loads every record into `catalog`; returns the etcd revision the load reflects.
    @discardableResult
    private func load(into catalog: Catalog) async throws -> Int64 {
        let kvs: [EtcdClient.KeyValue], revision: Int64
        do {
            (kvs, revision) = try await client.range(prefix: prefix)
        } catch {
            throw EtcdClient.Failure(description: "cannot read the catalog from etcd: \(error)")
        }
        var records: [StoredRecord] = []
        var indexRevision: Int64 = 0
        for kv in kvs {
            guard let (table, key) = record(at: kv.key) else { continue }
            if kv.key == indexKey { indexRevision = kv.modRevision }
            records.append(StoredRecord(table: table, key: key, value: kv.value))
        }
        try catalog.reload(records, revision: indexRevision)
        reached(indexRevision)
        return revision
    }

    /// Applies every later commit to `catalog` until the task is cancelled, reconnecting when the watch
    /// breaks and reloading everything when etcd no longer keeps the revisions it missed.
    private func follow(_ catalog: Catalog, after loadedRevision: Int64) async {
        let next = Mutex(loadedRevision + 1)
        var delay = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                try await client.watch(prefix: prefix, from: next.withLock { $0 }) { events in
                    let revision = try self.apply(events, to: catalog)
                    next.withLock { $0 = max($0, revision + 1) }
                }
                delay = .milliseconds(100)
            } catch is EtcdClient.Compacted {
                logger.warning("etcd compacted revisions not yet applied; reloading the catalog")
                if let revision = try? await load(into: catalog) { next.withLock { $0 = revision + 1 } }
            } catch {
                if Task.isCancelled { return }
                logger.warning("etcd watch failed; retrying", metadata: ["error": "\(error)", "delay": "\(delay)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    /// Queues a write; writes that queue up while a transaction is in flight go together in the next.
    public func commit(_ write: QueuedWrite, to catalog: Catalog) {
        if queue.enqueue(write) { Task { await drain(into: catalog) } }
    }

    /// Tells every registry that `session` was renewed.
    public func announceRenewal(of session: String) {
        let key = prefix + Array("\(Table.sessionRenewal.rawValue)/\(session)".utf8)
        Task {
            do {
                try await client.put(key: key, value: [])
            } catch {
                logger.warning("could not share a session renewal", metadata: ["session": "\(session)", "error": "\(error)"])
            }
        }
    }

    // MARK: Writing

    private func drain(into catalog: Catalog) async {
        while true {
            let batch = queue.takeAll()
            if batch.isEmpty { return }
            await commit(batch, catalog)
        }
    }

    /// Computes `writes` on the latest state and commits them in one transaction, again on a newer
    /// state as long as another registry commits first.
    private func commit(_ writes: [QueuedWrite], _ catalog: Catalog) async {
        var reports: [@Sendable (Result<Void, any Error>) -> Void] = []
        for _ in 0..<100 {
            var state = catalog.snapshot()
            let basis = state.storeRevision
            var mutations = MutationList()
            var ops: [StoreOp] = []
            reports = []
            for write in writes {
                let (effect, report) = write.apply(&state)
                for op in effect?.ops ?? [] { mutations.add(op, prefix: prefix) }
                ops += (effect?.ops ?? []).sorted { $0.endsSession && !$1.endsSession }
                reports.append(report)
            }
            if mutations.isEmpty { return reports.forEach { $0(.success(())) } }
            if mutations.count > Self.maxTxnOps || mutations.bytes > Self.maxTxnBytes {
                if writes.count == 1 {
                    return reports.forEach { $0(.failure(EtcdClient.Failure(description: "the write needs \(mutations.count) etcd operations "
                        + "of \(mutations.bytes) bytes; one etcd transaction takes \(Self.maxTxnOps) operations and \(Self.maxTxnBytes) bytes"))) }
                }
                await commit(Array(writes.prefix(writes.count / 2)), catalog)
                return await commit(Array(writes.dropFirst(writes.count / 2)), catalog)
            }
            let started = ContinuousClock.now
            let outcome: EtcdClient.TxnOutcome
            do {
                outcome = try await client.txn(ifModRevision: indexKey, is: basis, then: mutations.list)
            } catch {
                return reports.forEach { $0(.failure(error)) }
            }
            switch outcome {
            case .committed(let revision):
                let elapsed = ContinuousClock.now - started
                onCommit(Double(elapsed.nanoseconds) / 1e9, writes.count)
                if (try? catalog.applyOwnCommit(ops, basis: basis, revision: revision)) == true { reached(revision) }
                await waitUntilApplied(revision)
                return reports.forEach { $0(.success(())) }
            case .conflict(let current):
                await waitUntilApplied(current)
            }
        }
        let failure = EtcdClient.Failure(description: "gave up after 100 commits lost to other registries")
        reports.forEach { $0(.failure(failure)) }
    }

    // MARK: Following

    /// Applies one watch response; returns the last revision it holds.
    private func apply(_ events: [EtcdClient.Event], to catalog: Catalog) throws -> Int64 {
        var last: Int64 = 0
        var start = 0
        while start < events.count {
            let revision = events[start].kv.modRevision
            var end = start
            while end < events.count && events[end].kv.modRevision == revision { end += 1 }
            var changes: [StoreOp] = []
            var movesIndex = false
            for event in events[start..<end] {
                guard let (table, key) = record(at: event.kv.key) else { continue }
                if event.kv.key == indexKey { movesIndex = true }
                changes.append(event.isDelete ? .delete(table: table, key: key)
                                              : .put(table: table, key: key, value: event.kv.value))
            }
            // A session's end releases its locks in the same commit: see the session go first, so the
            // keys it held still name it and get their lock-delay.
            changes.sort { $0.endsSession && !$1.endsSession }
            try catalog.applyCommitted(changes, revision: movesIndex ? revision : nil)
            if movesIndex { reached(revision) }
            last = revision
            start = end
        }
        return last
    }

    private func reached(_ revision: Int64) {
        let due = applied.withLock { applied in
            applied.revision = max(applied.revision, revision)
            let due = applied.waiters.filter { $0.value.revision <= applied.revision }
            for id in due.keys { applied.waiters[id] = nil }
            return due.values
        }
        for waiter in due {
            waiter.timeout.cancel()
            waiter.resume.resume()
        }
    }

    /// Returns once the watch has applied `revision`, or after 5 s (the write is committed either way).
    private func waitUntilApplied(_ revision: Int64) async {
        await withCheckedContinuation { (resume: CheckedContinuation<Void, Never>) in
            applied.withLock { applied in
                if applied.revision >= revision { return resume.resume() }
                applied.nextWaiter += 1
                let id = applied.nextWaiter
                let timeout = Task {
                    try? await Task.sleep(for: .seconds(5))
                    self.applied.withLock { $0.waiters.removeValue(forKey: id) }?.resume.resume()
                }
                applied.waiters[id] = (revision, resume, timeout)
            }
        }
    }

    // MARK: Keys

    private var indexKey: [UInt8] { prefix + Array("meta/index".utf8) }

    /// The table and key of the record stored at `etcdKey`; nil for keys that are not records (or
    /// records of tables this release does not know).
    private func record(at etcdKey: [UInt8]) -> (table: Table, key: String)? {
        guard etcdKey.starts(with: prefix) else { return nil }
        let rest = etcdKey[prefix.count...]
        guard let slash = rest.firstIndex(of: UInt8(ascii: "/")),
              let table = Table(rawValue: String(decoding: rest[..<slash], as: UTF8.self)) else { return nil }
        return (table, String(decoding: rest[(slash + 1)...], as: UTF8.self))
    }
}

/// The operations of one transaction: one per key (the last one wins), in first-touched order.
private struct MutationList {
    private var order: [[UInt8]] = []
    private var byKey: [[UInt8]: EtcdClient.Mutation] = [:]

    /// Bytes of keys and values.
    private(set) var bytes = 0

    var isEmpty: Bool { order.isEmpty }
    var count: Int { order.count }
    var list: [EtcdClient.Mutation] { order.compactMap { byKey[$0] } }

    mutating func add(_ op: StoreOp, prefix: [UInt8]) {
        switch op {
        case .put(let table, let key, let value):
            set(.put(key: prefix + Array("\(table.rawValue)/\(key)".utf8), value: value))
        case .delete(let table, let key):
            set(.delete(key: prefix + Array("\(table.rawValue)/\(key)".utf8)))
            // A session that ends takes its renewal marker along.
            if table == .session { set(.delete(key: prefix + Array("\(Table.sessionRenewal.rawValue)/\(key)".utf8))) }
        }
    }

    private mutating func set(_ mutation: EtcdClient.Mutation) {
        if let replaced = byKey.updateValue(mutation, forKey: mutation.key) {
            bytes -= Self.size(replaced)
        } else {
            order.append(mutation.key)
        }
        bytes += Self.size(mutation)
    }

    private static func size(_ mutation: EtcdClient.Mutation) -> Int {
        switch mutation {
        case .put(let key, let value): key.count + value.count
        case .delete(let key): key.count
        }
    }
}
