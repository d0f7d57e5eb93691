import TrellisCore

/// A write the state refused, with the HTTP status Consul gives it.
public enum CatalogError: Error, Equatable, CustomStringConvertible {
    case badRequest(String)
    case notFound(String)
    /// Refused by the state itself, which Consul answers with 500 (`invalid session "…"`).
    case rejected(String)
    /// Refused for lack of rights (403).
    case forbidden(String)

    public var description: String {
        switch self {
        case .badRequest(let m), .notFound(let m), .rejected(let m), .forbidden(let m): m
        }
    }
}

/// What one committed write changed: the index it got, the records to persist, the keys to wake.
public struct WriteEffect: Sendable {
    public var index: UInt64
    public var ops: [StoreOp] = []
    /// Keys whose index is kept (and persisted) for blocking queries.
    public var touched: Set<String> = []
    /// Keys whose waiters wake but whose index is computed from the data (KV prefixes).
    public var wakeOnly: Set<String> = []

    /// Every key whose parked queries must be woken.
    public var wake: Set<String> { touched.union(wakeOnly) }
}

/// The registry's state in memory: its tables, the global index and the index of each watch key.
///
/// Every read is answered from here. Writes are applied here (serialized by the caller) and yield a
/// `WriteEffect` whose ops the store makes durable before the write is acknowledged. Each table's
/// rules live in the extension of its folder: Catalog/ (nodes, services, checks), KV/, Sessions/,
/// Connect/ (CA roots and configuration, intentions), ACL/ (tokens, policies, roles), and one file each for coordinates,
/// autopilot, config entries and config-file services.
public struct RegistryState: Sendable {
    public private(set) var index: UInt64 = 0
    var catalog = CatalogTable()
    var kv = KVTable()
    var sessions = SessionTable()
    /// Network coordinates by node (RegistryState+Coordinates.swift).
    var coordinates: [String: JSON] = [:]
    /// Autopilot's settings once written (RegistryState+Autopilot.swift).
    var autopilot: JSONObject?
    /// Config entries by `kind\nname` (RegistryState+ConfigEntries.swift).
    var configEntries: [String: JSONObject] = [:]
    /// IDs of the agent services the config file defines (RegistryState+ConfigServices.swift).
    var configServices: Set<String> = []
    /// The certificate authority's configuration and roots (Connect/RegistryState+CA.swift).
    var caConfig: CAConfiguration?
    var caRoots: [String: CARoot] = [:]
    /// Intentions by `source\ndestination` (Connect/RegistryState+Intentions.swift).
    var intentions: [String: Intention] = [:]
    /// Tokens, policies, roles, auth methods, binding rules (ACL/RegistryState+ACL.swift).
    var acl = ACLTable()
    private var watchIndexes: [String: UInt64] = [:]
    /// The shared store's revision these contents reflect (etcd's mod_revision of the index record);
    /// 0 with a local store.
    var storeRevision: Int64 = 0
    private var pending: WriteEffect?

    public init() {}

    // MARK: Loading

    /// Rebuilds the state from the records of a store.
    public init(records: [StoredRecord]) throws(RecordError) {
        for record in records {
            _ = try apply(.put(table: record.table, key: record.key, value: record.value), now: .now)
        }
    }

    /// Applies one record change read from a store — at load, or committed by another registry
    /// sharing the store — and returns the watch keys whose readers may now see a difference.
    public mutating func apply(_ change: StoreOp, now: ContinuousClock.Instant) throws(RecordError) -> [String] {
        switch change {
        case .put(let table, let key, let value):
            switch table {
            case .node: catalog.setNode(try NodeRecord.decode(value))
            case .service: catalog.insert(try ServiceRecord.decode(value))
            case .check: catalog.insert(try CheckRecord.decode(value))
            case .watchIndex:
                watchIndexes[key] = try IndexRecord.decode(value, table: table)
                return [key]
            case .meta where key == "index": index = try IndexRecord.decode(value, table: table)
            case .meta: break
            case .kv:
                let entry = try KVRecord.decode(value)
                kv.put(entry)
                return Self.kvWakeKeys(entry.key)
            case .kvTombstone:
                kv.setTombstone(key, at: try IndexRecord.decode(value, table: table))
                return Self.kvWakeKeys(key)
            case .session: sessions.put(try SessionRecord.decode(value), now: now, resetDeadline: false)
            case .sessionRenewal: _ = renewSession(key, now: now)
            case .coordinate:
                coordinates[key] = try JSONRecord.decode(value, table: table)
                return [WatchKey.coordinates]
            case .autopilot: autopilot = try JSONRecord.decode(value, table: table).objectValue
            case .configEntry:
                try loadConfigEntry(key: key, value)
                return [WatchKey.config]
            case .configServices: configServices = try StringSetRecord.decode(value, table: table)
            case .caRoot:
                caRoots[key] = try CARootRecord.decode(value)
                return [WatchKey.connectCA]
            case .caConfig:
                caConfig = try CAConfigurationRecord.decode(value)
                return [WatchKey.connectCA]
            case .intention:
                intentions[key] = try IntentionRecord.decode(value)
                return [WatchKey.intentions]
            case .aclToken, .aclPolicy, .aclRole, .aclAuthMethod, .aclBindingRule, .aclBootstrap:
                try loadACL(table, key: key, value)
                return [WatchKey.acl]
            }
        case .delete(let table, let key):
            switch table {
            case .node: catalog.removeNode(key)
            case .service: if let (node, id) = Table.splitPairKey(key) { catalog.remove(InstanceKey(node: node, id: id)) }
            case .check: if let (node, id) = Table.splitPairKey(key) { catalog.remove(CheckKey(node: node, checkID: id)) }
            case .kv:
                kv.drop(key)
                return Self.kvWakeKeys(key)
            case .kvTombstone: kv.dropTombstone(key)
            case .session: loadSessionEnd(key, now: now)
            case .coordinate:
                coordinates[key] = nil
                return [WatchKey.coordinates]
            case .configEntry:
                configEntries[key] = nil
                return [WatchKey.config]
            case .caRoot:
                caRoots[key] = nil
                return [WatchKey.connectCA]
            case .intention:
                intentions[key] = nil
                return [WatchKey.intentions]
            case .aclToken, .aclPolicy, .aclRole, .aclAuthMethod, .aclBindingRule:
                try loadACL(table, key: key, nil)
                return [WatchKey.acl]
            case .aclBootstrap, .watchIndex, .meta, .sessionRenewal, .autopilot, .configServices, .caConfig:
                break
            }
        }
        return []
    }

    // MARK: Writing

    /// Runs `body` as one write. Bodies must validate before they change anything.
    public mutating func write<T>(_ body: (inout RegistryState) throws(CatalogError) -> T) throws(CatalogError) -> (T, WriteEffect?) {
        pending = WriteEffect(index: index + 1)
        let result: T
        do {
            result = try body(&self)
        } catch {
            pending = nil
            throw error
        }
        guard var effect = pending, !effect.ops.isEmpty else {
            pending = nil
            return (result, nil)
        }
        pending = nil
        index = effect.index
        for key in effect.touched {
            watchIndexes[key] = index
            effect.ops.append(.put(table: .watchIndex, key: key, value: IndexRecord.encode(index)))
        }
        effect.ops.append(.put(table: .meta, key: "index", value: IndexRecord.encode(index)))
        return (result, effect)
    }

    /// Adds a record change to the write in progress, with the watch keys it touches (their index
    /// moves to the write's) and those it only wakes.
    mutating func record(_ op: StoreOp, touching keys: [String], waking wakeOnly: [String] = []) {
        pending?.ops.append(op)
        for key in keys { pending?.touched.insert(key) }
        for key in wakeOnly { pending?.wakeOnly.insert(key) }
    }

    /// The index the write in progress will get.
    var writeIndex: UInt64 { pending?.index ?? index + 1 }

    // MARK: Reading

    /// The index of the data behind `key`: when it last changed, never 0.
    public func watchIndex(_ key: String) -> UInt64 {
        let value = watchIndexes[key] ?? 0
        return value > 0 ? value : max(index, 1)
    }
}
