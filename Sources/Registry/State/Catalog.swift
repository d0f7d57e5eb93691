import Synchronization
import TrellisCore

/// The shared catalog: in-memory state guarded by a lock, durable through a `Store`, observable through a `WatchHub`.
public final class Catalog: Sendable {
    private let state: Mutex<CatalogState>
    private let store: any Store
    public let hub = WatchHub()
    /// Rendered reads, reused while the data behind them is unchanged.
    let responses = ResponseCache()

    public init(store: any Store) throws {
        self.store = store
        self.state = Mutex(try CatalogState(records: store.loadAll()))
    }

    /// Reads a consistent snapshot.
    public func read<T>(_ body: (borrowing CatalogState) throws -> T) rethrows -> T {
        try state.withLock { try body($0) }
    }

    /// Applies a write and calls `completion` once it is durable; waiters of the touched keys wake then.
    public func write<T: Sendable>(
        _ body: (inout CatalogState) throws(CatalogError) -> T,
        completion: @escaping @Sendable (Result<T, any Error>) -> Void
    ) {
        do {
            try state.withLock { (state: inout CatalogState) throws(CatalogError) in
                let (result, effect) = try state.write(body)
                // Appending under the lock keeps the store's order identical to the state's.
                store.append(effect?.ops ?? []) { [hub] outcome in
                    switch outcome {
                    case .success:
                        if let effect { hub.notify(effect.wake) }
                        completion(.success(result))
                    case .failure(let error):
                        completion(.failure(error))
                    }
                }
            }
        } catch {
            completion(.failure(error))
        }
    }

    /// `write` for async callers.
    public func write<T: Sendable>(_ body: (inout CatalogState) throws(CatalogError) -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            write(body) { continuation.resume(with: $0) }
        }
    }
}
