import NIOCore

/// Deadlines of one client connection outside its requests: a head that trickles in (slow-loris)
/// is answered `408` and the connection closed; a keep-alive connection idle for too long is closed.
public struct ConnectionTimeouts: Sendable, Equatable {
    /// From a head's first byte to its last.
    public var requestHeaders: TimeAmount = .seconds(10)
    /// Between requests (and from accept to the first byte).
    public var idle: TimeAmount = .seconds(60)

    public init(requestHeaders: TimeAmount = .seconds(10), idle: TimeAmount = .seconds(60)) {
        self.requestHeaders = requestHeaders
        self.idle = idle
    }
}

/// The deadline one client connection is under between its requests, as a plain value: the
/// handler reports what it reads and arms a timer at `deadline`; a request in flight is under the
/// attempt machine's deadlines instead.
struct ConnectionDeadlines {
    enum Expiry: Equatable {
        /// No request came for the idle timeout: close.
        case idle
        /// A head started and did not end in time: answer `408` and close.
        case headTooSlow
    }

    let timeouts: ConnectionTimeouts
    private(set) var deadline: NIODeadline?
    private var headStarted = false

    init(_ timeouts: ConnectionTimeouts, openedAt now: NIODeadline) {
        self.timeouts = timeouts
        deadline = now + timeouts.idle
    }

    /// Part of a head arrived; the head's deadline runs from its first byte.
    mutating func headIncomplete(at now: NIODeadline) {
        guard !headStarted else { return }
        headStarted = true
        deadline = now + timeouts.requestHeaders
    }

    /// A whole head arrived: its request is under way.
    mutating func headComplete() {
        headStarted = false
        deadline = nil
    }

    /// A response is complete and the connection stays open for the next request.
    mutating func requestFinished(at now: NIODeadline) {
        deadline = now + timeouts.idle
    }

    /// What has expired at `now`, if anything.
    func expiry(at now: NIODeadline) -> Expiry? {
        guard let deadline, deadline <= now else { return nil }
        return headStarted ? .headTooSlow : .idle
    }
}
