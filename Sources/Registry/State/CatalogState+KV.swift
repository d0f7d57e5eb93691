import TrellisCore

/// The KV store and sessions: Consul's semantics for CAS, locks, lock-delay and session invalidation.
extension CatalogState {
    /// The wake key of a KV read of `prefix` (an exact key reads as its own prefix).
    public static func kvWatchKey(_ prefix: String) -> String { "kv:" + prefix }

    /// Every prefix of `key`, so that watchers of a key, a folder or the whole tree all wake.
    static func kvWakeKeys(_ key: String) -> [String] {
        var keys = [kvWatchKey("")]
        var prefix = ""
        for ch in key {
            prefix.append(ch)
            keys.append(kvWatchKey(prefix))
        }
        return keys
    }

    // MARK: Reading

    public func kvEntry(_ key: String) -> KVEntry? { kv[key] }

    /// Entries under `prefix`, in key order.
    public func kvEntries(prefix: String) -> [KVEntry] {
        (prefix.isEmpty ? Array(kv.values) : kv.values.filter { $0.key.hasPrefix(prefix) }).sorted { $0.key < $1.key }
    }

    /// The index of a KV read: the last change of the key (or of anything under the prefix), deletions included.
    public func kvIndex(_ keyOrPrefix: String, recurse: Bool) -> UInt64 {
        if !recurse {
            if let entry = kv[keyOrPrefix] { return entry.modifyIndex }
            if let deleted = kvTombstones[keyOrPrefix] { return deleted }
            return max(kvLastIndex, 1)
        }
        if keyOrPrefix.isEmpty { return max(kvLastIndex, 1) }
        var latest: UInt64 = 0
        for entry in kv.values where entry.key.hasPrefix(keyOrPrefix) { latest = max(latest, entry.modifyIndex) }
        for (key, deleted) in kvTombstones where key.hasPrefix(keyOrPrefix) { latest = max(latest, deleted) }
        return latest > 0 ? latest : max(kvLastIndex, 1)
    }

    public func session(_ id: String) -> Session? { sessions[id] }
    public var allSessions: [Session] { sessions.values.sorted { ($0.createIndex, $0.id) < ($1.createIndex, $1.id) } }

    /// True when the key is under lock-delay at `now`.
    public func isLockDelayed(_ key: String, now: ContinuousClock.Instant) -> Bool {
        guard let until = lockDelays[key] else { return false }
        return now < until
    }

    public func expiredSessions(at now: ContinuousClock.Instant) -> [String] {
        sessionDeadlines.filter { $0.value <= now }.map(\.key)
    }

    // MARK: Writing

    /// Stores `entry` as given, stamping its indexes.
    public mutating func putKV(_ entry: KVEntry) {
        var entry = entry
        entry.createIndex = kv[entry.key]?.createIndex ?? writeIndex
        entry.modifyIndex = writeIndex
        kv[entry.key] = entry
        kvLastIndex = writeIndex
        record(.put(table: "kv", key: entry.key, value: KVJSON.entry(entry).serialized()), touching: [],
               waking: Self.kvWakeKeys(entry.key))
        if kvTombstones.removeValue(forKey: entry.key) != nil {
            record(.delete(table: "kvtomb", key: entry.key), touching: [])
        }
    }

    public mutating func deleteKV(_ key: String) {
        guard kv.removeValue(forKey: key) != nil else { return }
        kvTombstones[key] = writeIndex
        kvLastIndex = writeIndex
        record(.delete(table: "kv", key: key), touching: [])
        record(.put(table: "kvtomb", key: key, value: Array(String(writeIndex).utf8)), touching: [],
               waking: Self.kvWakeKeys(key))
    }

    public mutating func putSession(_ session: Session, now: ContinuousClock.Instant) {
        var session = session
        session.createIndex = sessions[session.id]?.createIndex ?? writeIndex
        session.modifyIndex = writeIndex
        sessions[session.id] = session
        if let ttl = session.ttl { sessionDeadlines[session.id] = now + ttl * 2 }
        record(.put(table: "session", key: session.id, value: KVJSON.session(session).serialized()),
               touching: [WatchKey.sessions])
    }

    /// Extends a TTL session's life; not a write (Consul does not persist renewals either).
    public mutating func renewSession(_ id: String, now: ContinuousClock.Instant) -> Session? {
        guard let session = sessions[id] else { return nil }
        if let ttl = session.ttl { sessionDeadlines[id] = now + ttl * 2 }
        return session
    }

    /// Destroys a session: its locks are released (or its keys deleted) and put under lock-delay.
    public mutating func destroySession(_ id: String, now: ContinuousClock.Instant) {
        guard let session = sessions.removeValue(forKey: id) else { return }
        sessionDeadlines[id] = nil
        record(.delete(table: "session", key: id), touching: [WatchKey.sessions])
        for var entry in kv.values where entry.session == id {
            if session.lockDelay > .zero { lockDelays[entry.key] = now + session.lockDelay }
            switch session.behavior {
            case .release:
                entry.session = ""
                putKV(entry)
            case .delete:
                deleteKV(entry.key)
            }
        }
        lockDelays = lockDelays.filter { $0.value > now }
    }

    mutating func invalidateSessions(linkedTo check: CheckKey) {
        let linked = sessions.values.filter { $0.node == check.node && $0.checkIDs.contains(check.checkID) }
        for session in linked { destroySession(session.id, now: .now) }
    }
}

extension WatchKey {
    public static let sessions = "sessions"
}

/// How a KV put treats the key's lock.
enum KVWrite: Sendable {
    case set
    case lock(session: String)
    case unlock(session: String)
}

extension CatalogState {
    /// Why `session` cannot take a lock (Consul's `kvsLockTxn` wording), nil when it can try.
    func lockRefusal(session: String) -> String? {
        if session.isEmpty { return "missing session" }
        if self.session(session) == nil { return "invalid session \"\(session)\"" }
        return nil
    }

    /// One KV put with Consul's CAS and lock rules; false when a condition is not met.
    mutating func applyKVWrite(key: String, value: [UInt8], flags: UInt64, cas: UInt64?, op: KVWrite,
                               now: ContinuousClock.Instant) throws(CatalogError) -> Bool {
        let existing = kvEntry(key)
        if let cas {
            if cas == 0 ? existing != nil : existing?.modifyIndex != cas { return false }
        }
        var entry = existing ?? KVEntry(key: key, value: value)
        entry.value = value
        entry.flags = flags
        switch op {
        case .set:
            break
        case .lock(let session):
            if let reason = lockRefusal(session: session) { throw .rejected(reason) }
            if entry.session != session {
                if !entry.session.isEmpty || isLockDelayed(key, now: now) { return false }
                entry.session = session
                entry.lockIndex += 1
            }
        case .unlock(let session):
            guard entry.session == session else { return false }
            entry.session = ""
        }
        putKV(entry)
        return true
    }
}
