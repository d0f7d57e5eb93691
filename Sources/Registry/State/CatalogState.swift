import TrellisCore

/// Identifies a service instance: its node and service ID.
public struct InstanceKey: Hashable, Sendable {
    public let node: String
    public let id: String
    public init(node: String, id: String) {
        self.node = node
        self.id = id
    }
}

/// Identifies a check: its node and check ID.
public struct CheckKey: Hashable, Sendable {
    public let node: String
    public let checkID: String
    public init(node: String, checkID: String) {
        self.node = node
        self.checkID = checkID
    }
}

/// The keys blocking queries park on. A write touches every key whose readers may see a change.
public enum WatchKey {
    public static let nodes = "nodes"
    public static let services = "services"
    public static let checks = "checks"
    public static func service(_ name: String) -> String { "svc:" + name }
    public static func node(_ name: String) -> String { "node:" + name }
}

/// A write the state refused, with the HTTP status Consul gives it.
public enum CatalogError: Error, Equatable, CustomStringConvertible {
    case badRequest(String)
    case notFound(String)
    /// Refused by the state itself, which Consul answers with 500 (`invalid session "…"`).
    case rejected(String)

    public var description: String {
        switch self {
        case .badRequest(let m), .notFound(let m), .rejected(let m): m
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

/// One entry of `/v1/health/service/:name`: an instance with its node and all checks that apply.
public struct HealthEntry: Sendable {
    public let node: Node
    public let service: ServiceInstance
    public let checks: [HealthCheck]
}

/// The catalog in memory: nodes, service instances and checks, the global index, and per-key indexes.
///
/// Every read is answered from here. Writes are applied here (serialized by the caller) and yield a
/// `WriteEffect` whose ops the store makes durable before the write is acknowledged.
public struct CatalogState: Sendable {
    public private(set) var index: UInt64 = 0
    private(set) var nodes: [String: Node] = [:]
    private(set) var instances: [InstanceKey: ServiceInstance] = [:]
    private var instancesByName: [String: Set<InstanceKey>] = [:]
    private var instancesByNode: [String: Set<String>] = [:]
    private(set) var checks: [CheckKey: HealthCheck] = [:]
    private var checksByInstance: [InstanceKey: Set<String>] = [:]
    private var watchIndexes: [String: UInt64] = [:]
    /// The shared store's revision these contents reflect (etcd's mod_revision of the index record);
    /// 0 with a local store.
    var storeRevision: Int64 = 0
    var pending: WriteEffect?
    // KV store and sessions (CatalogState+KV.swift).
    var kv: [String: KVEntry] = [:]
    var kvTombstones: [String: UInt64] = [:]
    var kvLastIndex: UInt64 = 0
    var sessions: [String: Session] = [:]
    /// When each TTL session lapses; in memory only: a restart grants a full TTL again, as Consul does.
    var sessionDeadlines: [String: ContinuousClock.Instant] = [:]
    /// Keys that cannot be acquired until the given instant (lock-delay after an invalidation).
    var lockDelays: [String: ContinuousClock.Instant] = [:]
    /// Network coordinates by node (CatalogState+Coordinates.swift).
    var coordinates: [String: JSON] = [:]
    /// Autopilot's settings once written (CatalogState+Autopilot.swift).
    var autopilot: JSONObject?
    /// Config entries by `kind\nname` (CatalogState+ConfigEntries.swift).
    var configEntries: [String: JSONObject] = [:]
    /// IDs of the agent services the config file defines (CatalogState+ConfigServices.swift).
    var configServices: Set<String> = []

    public init() {}

    // MARK: Loading

    /// Rebuilds the state from the records of a store.
    public init(records: [StoredRecord]) throws {
        for record in records {
            _ = try apply(.put(table: record.table, key: record.key, value: record.value), now: .now)
        }
    }

    /// Applies one record change read from a store — at load, or committed by another registry
    /// sharing the store — and returns the watch keys whose readers may now see a difference.
    public mutating func apply(_ change: StoreOp, now: ContinuousClock.Instant) throws -> [String] {
        switch change {
        case .put(let table, let key, let value):
            switch table {
            case "node":
                let node = try StoredCatalog.decodeNode(value)
                nodes[node.name] = node
            case "service":
                let service = try StoredCatalog.decodeService(value)
                unindex(InstanceKey(node: service.node, id: service.id))
                insert(service)
            case "check":
                let check = try StoredCatalog.decodeCheck(value)
                unindex(CheckKey(node: check.node, checkID: check.checkID))
                insert(check)
            case "watch":
                watchIndexes[key] = UInt64(String(decoding: value, as: UTF8.self)) ?? 0
                return [key]
            case "meta" where key == "index":
                index = UInt64(String(decoding: value, as: UTF8.self)) ?? 0
            case "kv":
                let entry = try KVJSON.decodeEntry(value)
                kv[entry.key] = entry
                kvLastIndex = max(kvLastIndex, entry.modifyIndex)
                return Self.kvWakeKeys(entry.key)
            case "kvtomb":
                let deleted = UInt64(String(decoding: value, as: UTF8.self)) ?? 0
                kvTombstones[key] = deleted
                kvLastIndex = max(kvLastIndex, deleted)
                return Self.kvWakeKeys(key)
            case "session":
                let session = try KVJSON.decodeSession(value)
                if sessions[session.id] == nil, let ttl = session.ttl { sessionDeadlines[session.id] = now + ttl * 2 }
                sessions[session.id] = session
            case SessionRenewal.table:
                _ = renewSession(key, now: now)
            case "coord":
                coordinates[key] = try JSON.parse(value)
                return [WatchKey.coordinates]
            case "autopilot":
                autopilot = try JSON.parse(value).objectValue
            case "config":
                try loadConfigEntry(key: key, value)
                return [WatchKey.config]
            case "cfgsvc":
                try loadConfigServiceIDs(value)
            default:
                break
            }
        case .delete(let table, let key):
            let pair = key.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            switch table {
            case "node": nodes[key] = nil
            case "coord":
                coordinates[key] = nil
                return [WatchKey.coordinates]
            case "config":
                configEntries[key] = nil
                return [WatchKey.config]
            case "service" where pair.count == 2: unindex(InstanceKey(node: pair[0], id: pair[1]))
            case "check" where pair.count == 2: unindex(CheckKey(node: pair[0], checkID: pair[1]))
            case "kv":
                kv[key] = nil
                return Self.kvWakeKeys(key)
            case "kvtomb": kvTombstones[key] = nil
            case "session":
                guard let session = sessions.removeValue(forKey: key) else { break }
                sessionDeadlines[key] = nil
                if session.lockDelay > .zero {
                    for entry in kv.values where entry.session == key { lockDelays[entry.key] = now + session.lockDelay }
                }
            default:
                break
            }
        }
        return []
    }

    // MARK: Writing

    /// Runs `body` as one write. Bodies must validate before they change anything.
    public mutating func write<T>(_ body: (inout CatalogState) throws(CatalogError) -> T) throws(CatalogError) -> (T, WriteEffect?) {
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
            effect.ops.append(.put(table: "watch", key: key, value: Array(String(index).utf8)))
        }
        effect.ops.append(.put(table: "meta", key: "index", value: Array(String(index).utf8)))
        return (result, effect)
    }

    mutating func record(_ op: StoreOp, touching keys: [String], waking wakeOnly: [String] = []) {
        pending?.ops.append(op)
        for key in keys { pending?.touched.insert(key) }
        for key in wakeOnly { pending?.wakeOnly.insert(key) }
    }

    var writeIndex: UInt64 { pending?.index ?? index + 1 }

    private func servicesOnNode(_ node: String) -> [String] {
        (instancesByNode[node] ?? []).compactMap { instances[InstanceKey(node: node, id: $0)]?.name }
    }

    public mutating func putNode(_ node: Node) {
        var node = node
        if let existing = nodes[node.name] {
            node.createIndex = existing.createIndex
            node.modifyIndex = existing.modifyIndex
            if existing == node { return }
        } else {
            node.createIndex = writeIndex
        }
        node.modifyIndex = writeIndex
        nodes[node.name] = node
        record(.put(table: "node", key: node.name, value: StoredCatalog.encode(node)),
               touching: [WatchKey.nodes, WatchKey.services, WatchKey.node(node.name)]
                   + servicesOnNode(node.name).map(WatchKey.service))
    }

    public mutating func removeNode(_ name: String) {
        guard nodes[name] != nil else { return }
        for id in instancesByNode[name] ?? [] { removeInstance(InstanceKey(node: name, id: id)) }
        for checkID in checksByInstance[InstanceKey(node: name, id: "")] ?? [] {
            removeCheck(CheckKey(node: name, checkID: checkID))
        }
        removeCoordinate(node: name)
        nodes[name] = nil
        record(.delete(table: "node", key: name), touching: [WatchKey.nodes, WatchKey.node(name)])
    }

    public mutating func putInstance(_ service: ServiceInstance) {
        var service = service
        let key = InstanceKey(node: service.node, id: service.id)
        var touched = [WatchKey.services, WatchKey.node(service.node), WatchKey.service(service.name)]
            + (service.connectTarget.map { [WatchKey.service($0)] } ?? [])
        if let existing = instances[key] {
            service.createIndex = existing.createIndex
            service.modifyIndex = existing.modifyIndex
            if existing == service { return }
            if let target = existing.connectTarget { touched.append(WatchKey.service(target)) }
            if existing.name != service.name {
                instancesByName[existing.name]?.remove(key)
                if instancesByName[existing.name]?.isEmpty == true { instancesByName[existing.name] = nil }
                touched.append(WatchKey.service(existing.name))
            }
        } else {
            service.createIndex = writeIndex
        }
        service.modifyIndex = writeIndex
        insert(service)
        record(.put(table: "service", key: "\(key.node)\n\(key.id)", value: StoredCatalog.encode(service)), touching: touched)
        for checkID in checksByInstance[key] ?? [] {
            guard var check = checks[CheckKey(node: key.node, checkID: checkID)] else { continue }
            check.serviceName = service.name
            check.serviceTags = service.tags
            putCheck(check)
        }
    }

    public mutating func removeInstance(_ key: InstanceKey) {
        guard let existing = unindex(key) else { return }
        for checkID in checksByInstance[key] ?? [] { removeCheck(CheckKey(node: key.node, checkID: checkID)) }
        record(.delete(table: "service", key: "\(key.node)\n\(key.id)"),
               touching: [WatchKey.services, WatchKey.node(key.node), WatchKey.service(existing.name)]
                   + (existing.connectTarget.map { [WatchKey.service($0)] } ?? []))
    }

    public mutating func putCheck(_ check: HealthCheck) {
        var check = check
        let key = CheckKey(node: check.node, checkID: check.checkID)
        if let existing = checks[key] {
            check.createIndex = existing.createIndex
            check.modifyIndex = existing.modifyIndex
            if existing == check { return }
            if existing.serviceID != check.serviceID {
                checksByInstance[InstanceKey(node: key.node, id: existing.serviceID)]?.remove(key.checkID)
            }
        } else {
            check.createIndex = writeIndex
        }
        check.modifyIndex = writeIndex
        insert(check)
        record(.put(table: "check", key: "\(key.node)\n\(key.checkID)", value: StoredCatalog.encode(check)),
               touching: checkWatchKeys(check))
        if check.status == .critical { invalidateSessions(linkedTo: key) }
    }

    /// Registers a check; re-registering keeps its current status and output unless a status was
    /// given explicitly, so that a service re-registering itself does not flap. Returns what was stored.
    public mutating func registerCheck(_ check: HealthCheck, explicitStatus: Bool) -> HealthCheck {
        var check = check
        if !explicitStatus, let existing = checks[CheckKey(node: check.node, checkID: check.checkID)] {
            check.status = existing.status
            check.output = existing.output
        }
        putCheck(check)
        return check
    }

    public mutating func removeCheck(_ key: CheckKey) {
        guard let existing = unindex(key) else { return }
        record(.delete(table: "check", key: "\(key.node)\n\(key.checkID)"), touching: checkWatchKeys(existing))
        invalidateSessions(linkedTo: key)
    }

    private func checkWatchKeys(_ check: HealthCheck) -> [String] {
        let services = check.serviceID.isEmpty
            ? servicesOnNode(check.node)
            : [instances[InstanceKey(node: check.node, id: check.serviceID)]?.name ?? check.serviceName]
        return [WatchKey.checks, WatchKey.node(check.node)] + services.map(WatchKey.service)
    }

    private mutating func insert(_ service: ServiceInstance) {
        let key = InstanceKey(node: service.node, id: service.id)
        instances[key] = service
        instancesByName[service.name, default: []].insert(key)
        instancesByNode[service.node, default: []].insert(service.id)
    }

    private mutating func insert(_ check: HealthCheck) {
        checks[CheckKey(node: check.node, checkID: check.checkID)] = check
        checksByInstance[InstanceKey(node: check.node, id: check.serviceID), default: []].insert(check.checkID)
    }

    /// Takes an instance out of the tables and their indexes.
    @discardableResult
    private mutating func unindex(_ key: InstanceKey) -> ServiceInstance? {
        guard let existing = instances.removeValue(forKey: key) else { return nil }
        instancesByName[existing.name]?.remove(key)
        if instancesByName[existing.name]?.isEmpty == true { instancesByName[existing.name] = nil }
        instancesByNode[key.node]?.remove(key.id)
        return existing
    }

    /// Takes a check out of the tables and their indexes.
    @discardableResult
    private mutating func unindex(_ key: CheckKey) -> HealthCheck? {
        guard let existing = checks.removeValue(forKey: key) else { return nil }
        checksByInstance[InstanceKey(node: key.node, id: existing.serviceID)]?.remove(key.checkID)
        return existing
    }

    // MARK: Reading

    /// The index of the data behind `key`: when it last changed, never 0.
    public func watchIndex(_ key: String) -> UInt64 {
        let value = watchIndexes[key] ?? 0
        return value > 0 ? value : max(index, 1)
    }

    public func node(_ name: String) -> Node? { nodes[name] }
    public func instance(_ key: InstanceKey) -> ServiceInstance? { instances[key] }
    public func check(_ key: CheckKey) -> HealthCheck? { checks[key] }

    public var allNodes: [Node] { nodes.values.sorted { $0.name < $1.name } }
    public var allChecks: [HealthCheck] { checks.values.sorted(by: Self.checkOrder) }
    public var instanceCount: Int { instances.count }
    public var allInstances: [ServiceInstance] { Array(instances.values) }
    public var serviceCount: Int { instancesByName.count }

    /// How many checks are in each status, without sorting or copying them.
    public func checkCountsByStatus() -> [HealthStatus: Int] {
        var counts: [HealthStatus: Int] = [:]
        for check in checks.values { counts[check.status, default: 0] += 1 }
        return counts
    }

    static func checkOrder(_ a: HealthCheck, _ b: HealthCheck) -> Bool {
        (a.node, a.checkID) < (b.node, b.checkID)
    }

    public func instances(onNode node: String) -> [ServiceInstance] {
        (instancesByNode[node] ?? []).compactMap { instances[InstanceKey(node: node, id: $0)] }.sorted { $0.id < $1.id }
    }

    /// Instances of `name`, ordered by node then service ID, as Consul orders them.
    public func instances(named name: String) -> [ServiceInstance] {
        (instancesByName[name] ?? []).compactMap { instances[$0] }.sorted { ($0.node, $0.id) < ($1.node, $1.id) }
    }

    /// The checks of one instance; `id` "" gives the node's own checks.
    public func checks(node: String, serviceID: String) -> [HealthCheck] {
        (checksByInstance[InstanceKey(node: node, id: serviceID)] ?? [])
            .compactMap { checks[CheckKey(node: node, checkID: $0)] }
            .sorted(by: Self.checkOrder)
    }

    public func checks(onNode node: String) -> [HealthCheck] {
        checks.values.filter { $0.node == node }.sorted(by: Self.checkOrder)
    }

    public func checks(ofService name: String) -> [HealthCheck] {
        instances(named: name).flatMap { checks(node: $0.node, serviceID: $0.id) }
    }

    /// Health entries of a service: each instance with its node checks followed by its own checks.
    public func healthEntries(service name: String) -> [HealthEntry] {
        instances(named: name).compactMap(healthEntry)
    }

    /// An instance with its node and the checks that apply to it: the node's, then its own.
    public func healthEntry(_ instance: ServiceInstance) -> HealthEntry? {
        guard let node = nodes[instance.node] else { return nil }
        return HealthEntry(node: node, service: instance,
                           checks: checks(node: instance.node, serviceID: "") + checks(node: instance.node, serviceID: instance.id))
    }

    /// Health entries of the instances that accept mesh traffic for `name` (`/v1/health/connect/:name`).
    public func connectEntries(service name: String) -> [HealthEntry] {
        instances.values.filter { $0.connectTarget == name }
            .sorted { ($0.node, $0.id) < ($1.node, $1.id) }
            .compactMap(healthEntry)
    }

    /// Every service name with the union of its instances' tags; with `including`, only the names
    /// (and tags) of the instances it accepts.
    public func serviceTags(including: (ServiceInstance) -> Bool = { _ in true }) -> [(name: String, tags: [String])] {
        instancesByName.keys.sorted().compactMap { name in
            let accepted = instances(named: name).filter(including)
            guard !accepted.isEmpty else { return nil }
            var seen = Set<String>()
            return (name, accepted.flatMap(\.tags).filter { seen.insert($0).inserted })
        }
    }
}
