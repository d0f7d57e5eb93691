/// The session table, with what is kept in memory only: when each TTL session lapses (a restart
/// grants a full TTL again, as Consul does) and which keys are under lock-delay until when.
///
/// Consul's rules for destroying sessions and releasing their locks are `RegistryState`'s
/// (RegistryState+Sessions.swift).
struct SessionTable: Sendable {
    private(set) var sessions: [String: Session] = [:]
    private var deadlines: [String: ContinuousClock.Instant] = [:]
    private var lockDelays: [String: ContinuousClock.Instant] = [:]

    // MARK: Changing

    /// Stores `session`; a TTL session's deadline is set anew when `resetDeadline` or when it is new.
    mutating func put(_ session: Session, now: ContinuousClock.Instant, resetDeadline: Bool = true) {
        let isNew = sessions.updateValue(session, forKey: session.id) == nil
        if let ttl = session.ttl, resetDeadline || isNew { deadlines[session.id] = now + ttl * 2 }
    }

    /// Extends a TTL session's life: Consul lets a session live twice its TTL after each renewal.
    mutating func renew(_ id: String, now: ContinuousClock.Instant) -> Session? {
        guard let session = sessions[id] else { return nil }
        if let ttl = session.ttl { deadlines[id] = now + ttl * 2 }
        return session
    }

    mutating func remove(_ id: String) -> Session? {
        deadlines[id] = nil
        return sessions.removeValue(forKey: id)
    }

    /// Puts `keys` under lock-delay until `until`.
    mutating func delayLocks(_ keys: [String], until: ContinuousClock.Instant) {
        for key in keys { lockDelays[key] = until }
    }

    /// Forgets lock-delays that ended by `now`.
    mutating func pruneLockDelays(now: ContinuousClock.Instant) {
        lockDelays = lockDelays.filter { $0.value > now }
    }

    // MARK: Reading

    func session(_ id: String) -> Session? { sessions[id] }

    /// True when `key` is under lock-delay at `now`.
    func isLockDelayed(_ key: String, now: ContinuousClock.Instant) -> Bool {
        guard let until = lockDelays[key] else { return false }
        return now < until
    }

    /// Sessions whose TTL has lapsed by `now`.
    func expired(at now: ContinuousClock.Instant) -> [String] {
        deadlines.filter { $0.value <= now }.map(\.key)
    }
}
