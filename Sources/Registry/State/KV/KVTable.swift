/// The KV table: entries by key, and when each deleted key was deleted (tombstones), so that a
/// blocking read of a key or prefix sees its deletion's index.
///
/// Only keeps entries, tombstones and the last KV index consistent; Consul's rules for CAS and
/// locks are `RegistryState`'s (RegistryState+KV.swift).
struct KVTable: Sendable {
    private(set) var entries: [String: KVEntry] = [:]
    private(set) var tombstones: [String: UInt64] = [:]
    /// The index of the last KV change, deletions included.
    private(set) var lastIndex: UInt64 = 0

    // MARK: Changing

    /// Stores `entry`; true when the key had a tombstone, which goes.
    @discardableResult
    mutating func put(_ entry: KVEntry) -> Bool {
        entries[entry.key] = entry
        lastIndex = max(lastIndex, entry.modifyIndex)
        return tombstones.removeValue(forKey: entry.key) != nil
    }

    /// Deletes `key` at `index`, leaving a tombstone; false when it did not exist.
    mutating func delete(_ key: String, at index: UInt64) -> Bool {
        guard entries.removeValue(forKey: key) != nil else { return false }
        setTombstone(key, at: index)
        return true
    }

    /// Drops `key` without a tombstone (a deletion read back from a store, whose tombstone is its own record).
    mutating func drop(_ key: String) { entries[key] = nil }

    mutating func setTombstone(_ key: String, at index: UInt64) {
        tombstones[key] = index
        lastIndex = max(lastIndex, index)
    }

    mutating func dropTombstone(_ key: String) { tombstones[key] = nil }

    // MARK: Reading

    func entry(_ key: String) -> KVEntry? { entries[key] }

    /// Entries under `prefix`, in key order.
    func entries(prefix: String) -> [KVEntry] {
        (prefix.isEmpty ? Array(entries.values) : entries.values.filter { $0.key.hasPrefix(prefix) }).sorted { $0.key < $1.key }
    }

    /// The index of a KV read: the last change of the key (or of anything under the prefix), deletions included.
    func index(_ keyOrPrefix: String, recurse: Bool) -> UInt64 {
        if !recurse {
            if let entry = entries[keyOrPrefix] { return entry.modifyIndex }
            if let deleted = tombstones[keyOrPrefix] { return deleted }
            return max(lastIndex, 1)
        }
        if keyOrPrefix.isEmpty { return max(lastIndex, 1) }
        var latest: UInt64 = 0
        for entry in entries.values where entry.key.hasPrefix(keyOrPrefix) { latest = max(latest, entry.modifyIndex) }
        for (key, deleted) in tombstones where key.hasPrefix(keyOrPrefix) { latest = max(latest, deleted) }
        return latest > 0 ? latest : max(lastIndex, 1)
    }

    /// Keys held by `session`'s lock.
    func keys(lockedBy session: String) -> [String] {
        entries.values.filter { $0.session == session }.map(\.key)
    }
}
