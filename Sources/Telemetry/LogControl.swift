import Foundation
import Logging
import Synchronization

/// A daemon's log level that can change while it runs (`PUT /v1/agent/reload`), and the listeners
/// that stream its log lines at their own level (`/v1/agent/monitor`), whatever that level is.
public final class LogControl: Sendable {
    /// One log line as a listener receives it.
    public struct Record: Sendable {
        public let date: Date
        public let level: Logger.Level
        public let label: String
        public let message: String
        public let metadata: [(key: String, value: String)]
    }

    public struct Token: Hashable, Sendable {
        fileprivate let id: UInt64
    }

    private struct State {
        var level: Logger.Level
        var listeners: [UInt64: (level: Logger.Level, deliver: @Sendable (Record) -> Void)] = [:]
        var nextID: UInt64 = 0
        /// The most verbose of `level` and the listeners' levels: what loggers must let through.
        var threshold: Logger.Level { listeners.values.map(\.level).reduce(level, min) }
    }

    private let state: Mutex<State>

    public init(level: Logger.Level) { state = Mutex(State(level: level)) }

    /// The level of the daemon's own output.
    public var level: Logger.Level {
        get { state.withLock { $0.level } }
        set { state.withLock { $0.level = newValue } }
    }

    var threshold: Logger.Level { state.withLock { $0.threshold } }

    /// Delivers every line at `level` or above to `deliver` (on the logging thread) until `unsubscribe`.
    public func subscribe(level: Logger.Level, _ deliver: @escaping @Sendable (Record) -> Void) -> Token {
        state.withLock { state in
            state.nextID += 1
            state.listeners[state.nextID] = (level, deliver)
            return Token(id: state.nextID)
        }
    }

    public func unsubscribe(_ token: Token) {
        _ = state.withLock { $0.listeners.removeValue(forKey: token.id) }
    }

    /// Whether the daemon's own output takes `level`, and the listeners that do.
    fileprivate func route(_ level: Logger.Level) -> (output: Bool, listeners: [@Sendable (Record) -> Void]) {
        state.withLock { state in
            (level >= state.level, state.listeners.values.filter { level >= $0.level }.map(\.deliver))
        }
    }
}

/// Wraps a daemon's log handler so that its level is `control`'s and its lines also reach the
/// control's listeners.
public struct ControlledLogHandler: LogHandler {
    private var inner: any LogHandler
    private let control: LogControl
    private let label: String

    public init(_ inner: any LogHandler, label: String, control: LogControl) {
        var inner = inner
        inner.logLevel = .trace
        self.inner = inner
        self.label = label
        self.control = control
    }

    /// The most verbose level anyone listens at, so that the logger lets those lines through.
    public var logLevel: Logger.Level {
        get { control.threshold }
        set { control.level = newValue }
    }

    public var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    public func log(event: LogEvent) {
        let (output, listeners) = control.route(event.level)
        if output { inner.log(event: event) }
        guard !listeners.isEmpty else { return }
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let record = LogControl.Record(date: Date(), level: event.level, label: label, message: event.message.description,
                                       metadata: merged.sorted { $0.key < $1.key }.map { ($0.key, $0.value.description) })
        listeners.forEach { $0(record) }
    }
}
