import Synchronization
import TrellisCore

/// One change to durable storage: a record put or deleted in a table.
public enum StoreOp: Sendable, Equatable {
    case put(table: Table, key: String, value: [UInt8])
    case delete(table: Table, key: String)

    /// True for the deletion of a session record (which releases the session's locks).
    public var endsSession: Bool {
        if case .delete(.session, _) = self { return true }
        return false
    }
}

/// A record read back from durable storage at start-up.
public struct StoredRecord: Sendable {
    public let table: Table
    public let key: String
    public let value: [UInt8]

    public init(table: Table, key: String, value: [UInt8]) {
        self.table = table
        self.key = key
        self.value = value
    }
}

/// Writes that queue up while a commit is in flight, taken together by the next commit (group commit).
final class GroupCommitQueue<Item: Sendable>: Sendable {
    private let state = Mutex<(items: [Item], draining: Bool)>(([], false))

    /// Queues `item`; true when no drain is running, so the caller must start one.
    func enqueue(_ item: Item) -> Bool {
        state.withLock { state in
            state.items.append(item)
            if state.draining { return false }
            state.draining = true
            return true
        }
    }

    /// Everything queued since the last call; empty when the drain is over (it then stops).
    func takeAll() -> [Item] {
        state.withLock { state in
            let taken = state.items
            state.items = []
            if taken.isEmpty { state.draining = false }
            return taken
        }
    }
}

/// Durable storage below the in-memory state: a write is acknowledged once its records are durable.
///
/// Implementations commit several waiting writes together (group commit), so durability does not
/// cost throughput. A local store (`SQLiteStore`) applies a write to the state at once and logs its
/// records in the same order; a store shared by several registries (`EtcdStore`) computes the write
/// on a snapshot, commits it if no other registry committed first, and applies every registry's
/// commits in the order the store gives them.
public protocol Store: Sendable {
    /// What operators call the store: `sqlite`, `etcd`.
    var kind: String { get }
    /// Loads the stored records into `catalog`; a shared store keeps applying the other registries'
    /// commits until it is closed.
    func open(_ catalog: Catalog) async throws
    /// Applies `write` to `catalog`'s state and makes its records durable; the write reports when.
    func commit(_ write: QueuedWrite, to catalog: Catalog)
    /// Tells the registries sharing the store that a TTL session was renewed (renewals are not writes).
    func announceRenewal(of session: String)
    /// The members of the store's own cluster, for `/v1/operator/raft/configuration`; nil for a local store.
    func members() async throws -> [JSON]?
    func close()
}
