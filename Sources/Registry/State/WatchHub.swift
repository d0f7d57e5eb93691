import Synchronization

/// Parks blocking queries on a watch key and wakes exactly those whose key changed.
///
/// A waiter costs one dictionary entry; waking is a single pass over the key's waiters, so
/// thousands of parked long-polls cost nothing until their data changes.
public final class WatchHub: Sendable {
    public struct Token: Sendable, Hashable {
        let key: String
        let id: UInt64
    }

    private struct State {
        var nextID: UInt64 = 0
        var waiters: [String: [UInt64: @Sendable () -> Void]] = [:]
        var count = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Registers `wake` to run once, the next time `key` changes.
    public func wait(on key: String, _ wake: @escaping @Sendable () -> Void) -> Token {
        state.withLock { state in
            state.nextID += 1
            state.waiters[key, default: [:]][state.nextID] = wake
            state.count += 1
            return Token(key: key, id: state.nextID)
        }
    }

    /// Forgets a waiter that no longer needs waking (timed out or client gone).
    public func cancel(_ token: Token) {
        state.withLock { state in
            if state.waiters[token.key]?.removeValue(forKey: token.id) != nil {
                state.count -= 1
                if state.waiters[token.key]?.isEmpty == true { state.waiters[token.key] = nil }
            }
        }
    }

    /// Wakes every waiter of every key in `keys`.
    public func notify(_ keys: some Sequence<String>) {
        var toWake: [@Sendable () -> Void] = []
        state.withLock { state in
            for key in keys {
                if let waiters = state.waiters.removeValue(forKey: key) {
                    state.count -= waiters.count
                    toWake.append(contentsOf: waiters.values)
                }
            }
        }
        for wake in toWake { wake() }
    }

    /// How many queries are parked right now.
    public var waitingCount: Int { state.withLock { $0.count } }
}
