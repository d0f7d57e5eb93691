import NIOCore

/// What is kept of a request body so that another attempt can send it again: every part while
/// the body fits in `limit`. Once a part went out without being kept, the request can no longer
/// be replayed (and is not retried).
struct ReplayBuffer {
    let limit: Int
    private(set) var parts: [ByteBuffer] = []
    private(set) var bytes = 0
    private(set) var isReplayable = true

    init(limit: Int) { self.limit = limit }

    /// Keeps a part that no connection has taken yet, whatever its size, since it must still be
    /// sent; true when more waits than a replay keeps (the client should be read no further).
    mutating func wait(_ part: ByteBuffer) -> Bool {
        parts.append(part)
        bytes += part.readableBytes
        return bytes > limit
    }

    /// Keeps a part that was written to the attempt's connection, while the body fits.
    mutating func keepSent(_ part: ByteBuffer) {
        guard isReplayable else { return }
        if bytes + part.readableBytes <= limit {
            parts.append(part)
            bytes += part.readableBytes
        } else {
            letGo()
        }
    }

    /// The parts that waited were written to a new connection: lets go of them when they are
    /// more than a replay keeps.
    mutating func settle() {
        if bytes > limit || !isReplayable { letGo() }
    }

    private mutating func letGo() {
        isReplayable = false
        parts = []
        bytes = 0
    }
}
