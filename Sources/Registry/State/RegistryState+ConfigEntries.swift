import TrellisCore

/// Config entries (`/v1/config`), by kind and name, with the indexes Consul gives them.
extension RegistryState {

    public func configEntry(kind: String, name: String) -> JSONObject? { configEntries[Table.pairKey(kind, name)] }

    /// The entries of one kind, by name.
    public func configEntries(kind: String) -> [JSONObject] {
        configEntries.filter { $0.key.hasPrefix(kind + "\n") }.sorted { $0.key < $1.key }.map(\.value)
    }

    /// Stores `entry` (with `Kind` and `Name` set); false when `cas` does not match its `ModifyIndex`
    /// (0: only when absent), as Consul's `?cas=`.
    mutating func putConfigEntry(_ entry: JSONObject, kind: String, name: String, cas: UInt64?) -> Bool {
        let key = Table.pairKey(kind, name)
        let existing = configEntries[key]
        let modifyIndex = existing?.field("ModifyIndex")?.uint64Value ?? 0
        if let cas, cas != modifyIndex { return false }
        var stored = JSONObject(entry.pairs.filter { !["CreateIndex", "ModifyIndex"].contains($0.key) })
        stored.append("CreateIndex", existing?.field("CreateIndex") ?? .unsigned(writeIndex))
        stored.append("ModifyIndex", .unsigned(writeIndex))
        configEntries[key] = stored
        record(.put(table: .configEntry, key: key, value: JSONRecord.encode(.object(stored))),
               touching: Self.configWatchKeys(kind, existing) + Self.configWatchKeys(kind, stored))
        return true
    }

    /// Deletes an entry; false when `cas` is given and does not match its `ModifyIndex`.
    mutating func deleteConfigEntry(kind: String, name: String, cas: UInt64?) -> Bool {
        let key = Table.pairKey(kind, name)
        let existing = configEntries[key]
        if let cas, cas != existing?.field("ModifyIndex")?.uint64Value ?? 0 { return false }
        guard let existing else { return true }
        configEntries[key] = nil
        record(.delete(table: .configEntry, key: key), touching: Self.configWatchKeys(kind, existing))
        return true
    }

    mutating func loadConfigEntry(key: String, _ value: [UInt8]) throws(RecordError) {
        configEntries[key] = try JSONRecord.decode(value, table: .configEntry).objectValue
    }

    /// The services a gateway's entry names, with the listener port and protocol of ingress gateways.
    static func gatewayServices(_ entry: JSONObject) -> [(name: String, port: Int?, protocol: String?)] {
        if let listeners = entry.field("Listeners")?.arrayValue {
            return listeners.flatMap { listener in
                (listener["Services"]?.arrayValue ?? []).compactMap { service in
                    service["Name"]?.stringValue.map {
                        (name: $0, port: listener["Port"]?.intValue.map { Int($0) }, protocol: listener["Protocol"]?.stringValue ?? "tcp")
                    }
                }
            }
        }
        return (entry.field("Services")?.arrayValue ?? []).compactMap { service in
            service["Name"]?.stringValue.map { (name: $0, port: nil, protocol: nil) }
        }
    }

    /// A write to an entry wakes readers of its kind and, for gateways, of the services it names.
    private static func configWatchKeys(_ kind: String, _ entry: JSONObject?) -> [String] {
        guard let entry else { return [WatchKey.config] }
        var keys = [WatchKey.config]
        if kind == "ingress-gateway" || kind == "terminating-gateway" {
            keys += gatewayServices(entry).map { WatchKey.service($0.name) }
            if let name = entry.field("Name")?.stringValue { keys.append(WatchKey.service(name)) }
        }
        return keys
    }
}

extension WatchKey {
    public static let config = "config"
}
