import Synchronization

/// Labelled instruments made once per label set: registering with Prometheus on every event would
/// rebuild and look up the label key each time.
public final class InstrumentCache<Instrument: Sendable>: Sendable {
    private let instruments = Mutex<[String: Instrument]>([:])

    public init() {}

    /// The instrument for `key`, made by `make` the first time.
    public func get(_ key: String, make: () -> Instrument) -> Instrument {
        instruments.withLock { cache in
            if let found = cache[key] { return found }
            let made = make()
            cache[key] = made
            return made
        }
    }
}
