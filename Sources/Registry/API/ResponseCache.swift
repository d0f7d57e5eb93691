import Synchronization
import TrellisHTTP

/// The last rendering of each read, valid while the read's index is unchanged.
///
/// Every read's index moves whenever anything it renders changes (that is what blocking queries
/// rely on too), so a hit is always identical to a fresh rendering. Hot reads such as a sidecar's
/// `/v1/health/service/:name?passing` then cost a lookup instead of JSON encoding.
final class ResponseCache: Sendable {
    private static let capacity = 4096
    private let entries = Mutex<[String: Entry]>([:])

    /// A rendering, the index it is valid for and when it was made (for `?cached`'s `Age`).
    struct Entry {
        let index: UInt64
        let response: HTTPResponse
        let stored: ContinuousClock.Instant
    }

    /// The request without its blocking parameters: reads that differ only in those render alike.
    static func key(for request: HTTPRequest) -> String {
        var key = request.path
        for item in request.query.items where item.name != "index" && item.name != "wait" {
            key += "\u{0}" + item.name + "=" + item.value
        }
        return key
    }

    func lookup(_ key: String, index: UInt64) -> Entry? {
        entries.withLock { entries in
            guard let entry = entries[key], entry.index == index else { return nil }
            return entry
        }
    }

    func store(_ key: String, index: UInt64, response: HTTPResponse) {
        entries.withLock { entries in
            if entries.count >= Self.capacity && entries[key] == nil { entries.removeAll(keepingCapacity: true) }
            entries[key] = Entry(index: index, response: response, stored: .now)
        }
    }
}
