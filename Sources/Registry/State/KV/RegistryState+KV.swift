import TrellisCore

/// The KV store: Consul's rules for CAS and locks, and the wake keys of KV reads.
extension RegistryState {
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

    public func kvEntry(_ key: String) -> KVEntry? { kv.entry(key) }

    /// Entries under `prefix`, in key order.
    public func kvEntries(prefix: String) -> [KVEntry] { kv.entries(prefix: prefix) }

    /// The index of a KV read: the last change of the key (or of anything under the prefix), deletions included.
    public func kvIndex(_ keyOrPrefix: String, recurse: Bool) -> UInt64 { kv.index(keyOrPrefix, recurse: recurse) }

    // MARK: Writing

    /// Stores `entry` as given, stamping its indexes.
    public mutating func putKV(_ entry: KVEntry) {
        var entry = entry
        entry.createIndex = kv.entry(entry.key)?.createIndex ?? writeIndex
        entry.modifyIndex = writeIndex
        let hadTombstone = kv.put(entry)
        record(.put(table: .kv, key: entry.key, value: KVRecord.encode(entry)), touching: [],
               waking: Self.kvWakeKeys(entry.key))
        if hadTombstone { record(.delete(table: .kvTombstone, key: entry.key), touching: []) }
    }

    public mutating func deleteKV(_ key: String) {
        guard kv.delete(key, at: writeIndex) else { return }
        record(.delete(table: .kv, key: key), touching: [])
        record(.put(table: .kvTombstone, key: key, value: IndexRecord.encode(writeIndex)), touching: [],
               waking: Self.kvWakeKeys(key))
    }
}

/// How a KV put treats the key's lock.
enum KVWrite: Sendable {
    case set
    case lock(session: String)
    case unlock(session: String)
}

extension RegistryState {
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
