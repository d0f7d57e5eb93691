import TrellisCore

extension WatchKey {
    public static let sessions = "sessions"
}

/// Sessions: leases that hold KV locks until destroyed, until their TTL lapses, or until a check
/// they are linked to fails; Consul's rules for releasing their locks and lock-delay.
extension RegistryState {
    // MARK: Reading

    public func session(_ id: String) -> Session? { sessions.session(id) }
    public var allSessions: [Session] { sessions.sessions.values.sorted { ($0.createIndex, $0.id) < ($1.createIndex, $1.id) } }

    /// True when the key is under lock-delay at `now`.
    public func isLockDelayed(_ key: String, now: ContinuousClock.Instant) -> Bool { sessions.isLockDelayed(key, now: now) }

    public func expiredSessions(at now: ContinuousClock.Instant) -> [String] { sessions.expired(at: now) }

    // MARK: Writing

    public mutating func putSession(_ session: Session, now: ContinuousClock.Instant) {
        var session = session
        session.createIndex = sessions.session(session.id)?.createIndex ?? writeIndex
        session.modifyIndex = writeIndex
        sessions.put(session, now: now)
        record(.put(table: .session, key: session.id, value: SessionRecord.encode(session)), touching: [WatchKey.sessions])
    }

    /// Extends a TTL session's life; not a write (Consul does not persist renewals either).
    public mutating func renewSession(_ id: String, now: ContinuousClock.Instant) -> Session? {
        sessions.renew(id, now: now)
    }

    /// Destroys a session: its locks are released (or its keys deleted) and put under lock-delay.
    public mutating func destroySession(_ id: String, now: ContinuousClock.Instant) {
        guard let session = sessions.remove(id) else { return }
        record(.delete(table: .session, key: id), touching: [WatchKey.sessions])
        let held = kv.keys(lockedBy: id)
        if session.lockDelay > .zero { sessions.delayLocks(held, until: now + session.lockDelay) }
        for key in held {
            switch session.behavior {
            case .release:
                guard var entry = kv.entry(key) else { continue }
                entry.session = ""
                putKV(entry)
            case .delete:
                deleteKV(key)
            }
        }
        sessions.pruneLockDelays(now: now)
    }

    /// Destroys the sessions linked to a check that failed or went away.
    mutating func invalidateSessions(linkedTo check: CheckKey) {
        let linked = sessions.sessions.values.filter { $0.node == check.node && $0.checkIDs.contains(check.checkID) }
        for session in linked { destroySession(session.id, now: .now) }
    }

    /// Destroys the sessions of a node that is deregistered, as Consul's `deleteNodeTxn` does.
    mutating func invalidateSessions(onNode node: String) {
        for session in sessions.sessions.values where session.node == node { destroySession(session.id, now: .now) }
    }

    /// A session's end read back from a store (at load, or committed by another registry): the keys
    /// it held come under lock-delay; their release is a record of its own.
    mutating func loadSessionEnd(_ id: String, now: ContinuousClock.Instant) {
        guard let session = sessions.remove(id), session.lockDelay > .zero else { return }
        sessions.delayLocks(kv.keys(lockedBy: id), until: now + session.lockDelay)
    }
}
