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
