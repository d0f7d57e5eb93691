import NIOCore
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

    private struct Waiter {
        let loop: any EventLoop
        let wake: @Sendable () -> Void
    }

    private struct State {
        var nextID: UInt64 = 0
        var waiters: [String: [UInt64: Waiter]] = [:]
        var count = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// Registers `wake` to run once on `loop`, the next time `key` changes.
    public func wait(on key: String, loop: any EventLoop, _ wake: @escaping @Sendable () -> Void) -> Token {
        state.withLock { state in
            state.nextID += 1
            state.waiters[key, default: [:]][state.nextID] = Waiter(loop: loop, wake: wake)
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

    /// Wakes every waiter of every key in `keys`, with one task per event loop rather than one per waiter.
    public func notify(_ keys: some Sequence<String>) {
        var byLoop: [ObjectIdentifier: (loop: any EventLoop, wakes: [@Sendable () -> Void])] = [:]
        state.withLock { state in
            for key in keys {
                guard let waiters = state.waiters.removeValue(forKey: key) else { continue }
                state.count -= waiters.count
                for waiter in waiters.values {
                    byLoop[ObjectIdentifier(waiter.loop), default: (waiter.loop, [])].wakes.append(waiter.wake)
                }
            }
        }
        for (loop, wakes) in byLoop.values {
            loop.execute { for wake in wakes { wake() } }
        }
    }

    /// Wakes every parked query (after the whole state was replaced).
    public func notifyAll() {
        notify(state.withLock { Array($0.waiters.keys) })
    }

    /// How many queries are parked right now.
    public var waitingCount: Int { state.withLock { $0.count } }
}
