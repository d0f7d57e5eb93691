import Synchronization

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

/// Durable storage below the in-memory state: every batch is on disk before its completion runs.
///
/// Batches are applied in the order they were appended; implementations commit several
/// waiting batches together (group commit) so durability does not cost throughput.
public protocol Store: Sendable {
    func loadAll() throws -> [StoredRecord]
    func append(_ ops: [StoreOp], completion: @escaping @Sendable (Result<Void, any Error>) -> Void)
    func close()
}
