import Dispatch
import Foundation
import GRDB
import TrellisCore

/// The embedded store: one SQLite file in WAL mode, fsync on every commit, group-committed.
public final class SQLiteStore: Store {
    private typealias Batch = (ops: [StoreOp], completion: @Sendable (Result<Void, any Error>) -> Void)

    private let database: DatabaseQueue
    private let pending = GroupCommitQueue<Batch>()
    private let writer = DispatchQueue(label: "trellis.sqlite.writer")
    private let onCommit: @Sendable (_ seconds: Double, _ batches: Int) -> Void

    /// Opens (or creates) `path`. `onCommit` observes each group commit's latency and size.
    public init(path: String, onCommit: @escaping @Sendable (Double, Int) -> Void = { _, _ in }) throws {
        var config = Configuration()
        config.journalMode = .wal
        config.busyMode = .timeout(5)
        database = try DatabaseQueue(path: path, configuration: config)
        self.onCommit = onCommit
        // GRDB sets synchronous=NORMAL with WAL (no fsync per commit); acknowledged writes need FULL.
        try database.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            guard try Int.fetchOne(db, sql: "PRAGMA synchronous") == 2 else {
                throw DatabaseError(message: "could not enable synchronous=FULL")
            }
        }
        try database.write { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS records (
                    tbl TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                    PRIMARY KEY (tbl, key)
                ) WITHOUT ROWID
                """)
        }
    }

    public var kind: String { "sqlite" }

    public func open(_ catalog: Catalog) throws {
        try catalog.reload(loadAll(), revision: 0)
    }

    public func commit(_ write: QueuedWrite, to catalog: Catalog) {
        catalog.applyInPlace(write) { ops, done in append(ops, completion: done) }
    }

    /// No other registry reads this store.
    public func announceRenewal(of session: String) {}

    public func members() -> [JSON]? { nil }

    /// Every record, in no particular order.
    func loadAll() throws -> [StoredRecord] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT tbl, key, value FROM records").compactMap { row in
                // Records of tables this release does not know (a newer release's) stay on disk, unread.
                guard let table = Table(rawValue: row["tbl"]) else { return nil }
                let data: Data = row["value"]
                return StoredRecord(table: table, key: row["key"], value: [UInt8](data))
            }
        }
    }

    /// Logs `ops` after everything appended before; `completion` runs once they are on disk.
    func append(_ ops: [StoreOp], completion: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        if pending.enqueue((ops, completion)) { writer.async { self.drain() } }
    }

    /// Commits everything that queued up while the previous commit was syncing, in one transaction.
    private func drain() {
        while true {
            let batches = pending.takeAll()
            if batches.isEmpty { return }
            let started = ContinuousClock.now
            let result: Result<Void, any Error> = Result {
                try database.write { db in
                    let put = try db.cachedStatement(sql: "INSERT OR REPLACE INTO records (tbl, key, value) VALUES (?, ?, ?)")
                    let delete = try db.cachedStatement(sql: "DELETE FROM records WHERE tbl = ? AND key = ?")
                    for batch in batches {
                        for op in batch.ops {
                            switch op {
                            case .put(let table, let key, let value):
                                try put.execute(arguments: [table.rawValue, key, Data(value)])
                            case .delete(let table, let key):
                                try delete.execute(arguments: [table.rawValue, key])
                            }
                        }
                    }
                }
            }
            let elapsed = ContinuousClock.now - started
            onCommit(Double(elapsed.nanoseconds) / 1e9, batches.count)
            for batch in batches { batch.completion(result) }
        }
    }

    public func close() {
        writer.sync {}
        try? database.close()
    }
}
