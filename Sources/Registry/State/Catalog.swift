import Synchronization
import TrellisCore

/// The shared catalog: in-memory state guarded by a lock, durable through a store, observable through a `WatchHub`.
///
/// Every write goes through the store (`Store.commit`): a local store applies it here at once and
/// logs it; a shared store computes it on a snapshot and applies it once committed (see `Store`).
public final class Catalog: Sendable {
    private let state = Mutex(RegistryState())
    let store: any Store
    public let hub = WatchHub()
    /// How far the state is durable: a local store applies a write before its records are on disk,
    /// and no read may show it until they are.
    let durable = DurableIndex()
    /// Rendered reads, reused while the data behind them is unchanged.
    let responses = ResponseCache()
    /// The state's ACL index, readable without the lock: a request whose token was resolved at it
    /// needs no read of the state to be resolved again.
    let aclIndex = Atomic<UInt64>(0)

    /// A catalog holding what `store` holds.
    public init(store: any Store) async throws {
        self.store = store
        try await store.open(self)
        aclIndex.store(read { $0.aclIndex }, ordering: .releasing)
    }

    /// Reads a consistent snapshot.
    public func read<T>(_ body: (borrowing RegistryState) throws -> T) rethrows -> T {
        try state.withLock { try body($0) }
    }

    /// Applies a write and calls `completion` once it is durable; waiters of the touched keys wake then.
    ///
    /// `body` must decide from the state it is given: with a shared store it may run again on a newer state.
    public func write<T: Sendable>(
        _ body: @escaping @Sendable (inout RegistryState) throws(CatalogError) -> T,
        completion: @escaping @Sendable (Result<T, any Error>) -> Void
    ) {
        store.commit(QueuedWrite { state in
            do {
                let (result, effect) = try state.write(body)
                return (effect, { completion($0.map { result }) })
            } catch {
                return (nil, { _ in completion(.failure(error)) })
            }
        }, to: self)
    }

    /// `write` for async callers.
    public func write<T: Sendable>(_ body: @escaping @Sendable (inout RegistryState) throws(CatalogError) -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            write(body) { continuation.resume(with: $0) }
        }
    }

    /// Extends a TTL session's life (not a write: renewals are not persisted); other registries
    /// sharing the store are told. Nil when the session does not exist.
    public func renewSession(_ id: String) -> Session? {
        let session = state.withLock { $0.renewSession(id, now: .now) }
        if session != nil { store.announceRenewal(of: id) }
        return session
    }

    // MARK: For stores

    /// Applies `write` to the state in place and hands its records to `persist` while still holding
    /// the lock, so that a log keeps the state's order; waiters wake once `persist` reports them durable.
    func applyInPlace(_ write: QueuedWrite,
                      persist: ([StoreOp], @escaping @Sendable (Result<Void, any Error>) -> Void) -> Void) {
        state.withLock { state in
            let (effect, report) = write.apply(&state)
            aclIndex.store(state.aclIndex, ordering: .releasing)
            persist(effect?.ops ?? []) { [hub, durable] outcome in
                if case .success = outcome, let effect {
                    durable.advance(to: effect.index)
                    hub.notify(effect.wake)
                }
                report(outcome)
            }
        }
    }

    /// The state as of now, to compute a write on.
    func snapshot() -> RegistryState { state.withLock { $0 } }

    /// Applies changes committed to the shared store at `revision` (nil: changes outside the index,
    /// such as session renewals), unless the state already holds that revision.
    func applyCommitted(_ changes: [StoreOp], revision: Int64?) throws {
        _ = try apply(changes, revision: revision) { state in revision.map { state.storeRevision < $0 } ?? true }
    }

    /// Applies this registry's own commit at `revision` right away, if nothing was applied since
    /// `basis` (the revision the write was computed on); otherwise the watch brings it.
    /// - Returns: whether it was applied.
    func applyOwnCommit(_ changes: [StoreOp], basis: Int64, revision: Int64) throws -> Bool {
        try apply(changes, revision: revision) { $0.storeRevision == basis }
    }

    private func apply(_ changes: [StoreOp], revision: Int64?, if applies: (borrowing RegistryState) -> Bool) throws -> Bool {
        let now = ContinuousClock.now
        var wake = Set<String>()
        let (applied, index) = try state.withLock { state in
            guard applies(state) else { return (false, state.index) }
            for change in changes { wake.formUnion(try state.apply(change, now: now)) }
            if let revision { state.storeRevision = revision }
            aclIndex.store(state.aclIndex, ordering: .releasing)
            return (true, state.index)
        }
        // What a shared store applies is committed already.
        durable.advance(to: index)
        hub.notify(wake)
        return applied
    }

    /// Replaces the whole state with what the store holds and wakes every parked query.
    func reload(_ records: [StoredRecord], revision: Int64) throws {
        var fresh = try RegistryState(records: records)
        fresh.storeRevision = revision
        let index = fresh.index
        state.withLock { state in
            swap(&state, &fresh)
            aclIndex.store(state.aclIndex, ordering: .releasing)
        }
        durable.advance(to: index)
        hub.notifyAll()
    }
}

/// A write waiting for the store: applies itself to a state and says how to report the outcome.
public struct QueuedWrite: Sendable {
    let apply: @Sendable (inout RegistryState) -> (effect: WriteEffect?, report: @Sendable (Result<Void, any Error>) -> Void)
}

/// The index up to which writes are on disk. Answers that carry a later `X-Consul-Index` wait for it,
/// so that no client sees a write a crash could still lose (and no index a restart could take back).
final class DurableIndex: Sendable {
    private struct Waiter {
        let index: UInt64
        let resume: @Sendable () -> Void
    }

    /// Starts at 1: the index an empty catalog answers with.
    private let state = Mutex<(index: UInt64, waiters: [Waiter])>((1, []))

    var current: UInt64 { state.withLock { $0.index } }

    func advance(to index: UInt64) {
        let due = state.withLock { state -> [Waiter] in
            guard index > state.index else { return [] }
            state.index = index
            let due = state.waiters.filter { $0.index <= index }
            state.waiters.removeAll { $0.index <= index }
            return due
        }
        for waiter in due { waiter.resume() }
    }

    /// Runs `body` once everything up to `index` is durable (at once when it is).
    func whenDurable(_ index: UInt64, _ body: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if index <= state.index { return true }
            state.waiters.append(Waiter(index: index, resume: body))
            return false
        }
        if now { body() }
    }
}
