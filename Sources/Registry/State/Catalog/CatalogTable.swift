import TrellisCore

/// Identifies a service instance: its node and service ID.
public struct InstanceKey: Hashable, Sendable {
    public let node: String
    public let id: String
    public init(node: String, id: String) {
        self.node = node
        self.id = id
    }

    /// The instance's key in the `service` table.
    var recordKey: String { Table.pairKey(node, id) }
}

/// Identifies a check: its node and check ID.
public struct CheckKey: Hashable, Sendable {
    public let node: String
    public let checkID: String
    public init(node: String, checkID: String) {
        self.node = node
        self.checkID = checkID
    }

    /// The check's key in the `check` table.
    var recordKey: String { Table.pairKey(node, checkID) }
}

/// One entry of `/v1/health/service/:name`: an instance with its node and all checks that apply.
public struct HealthEntry: Sendable {
    public let node: Node
    public let service: ServiceInstance
    public let checks: [HealthCheck]
}

/// The catalog's tables (nodes, service instances, checks) and the secondary indexes reads use.
///
/// Only keeps the tables and their indexes consistent with each other; the rules of a write
/// (indexes, watch keys, records) are `RegistryState`'s (RegistryState+Catalog.swift).
struct CatalogTable: Sendable {
    private(set) var nodes: [String: Node] = [:]
    private(set) var instances: [InstanceKey: ServiceInstance] = [:]
    private var instancesByName: [String: Set<InstanceKey>] = [:]
    private var instancesByNode: [String: Set<String>] = [:]
    private(set) var checks: [CheckKey: HealthCheck] = [:]
    private var checksByInstance: [InstanceKey: Set<String>] = [:]

    // MARK: Changing

    mutating func setNode(_ node: Node) { nodes[node.name] = node }
    mutating func removeNode(_ name: String) { nodes[name] = nil }

    /// Inserts or replaces an instance.
    mutating func insert(_ service: ServiceInstance) {
        let key = InstanceKey(node: service.node, id: service.id)
        remove(key)
        instances[key] = service
        instancesByName[service.name, default: []].insert(key)
        instancesByNode[service.node, default: []].insert(service.id)
    }

    /// Takes an instance out of the table and its indexes.
    @discardableResult
    mutating func remove(_ key: InstanceKey) -> ServiceInstance? {
        guard let existing = instances.removeValue(forKey: key) else { return nil }
        instancesByName[existing.name]?.remove(key)
        if instancesByName[existing.name]?.isEmpty == true { instancesByName[existing.name] = nil }
        instancesByNode[key.node]?.remove(key.id)
        if instancesByNode[key.node]?.isEmpty == true { instancesByNode[key.node] = nil }
        return existing
    }

    /// Inserts or replaces a check.
    mutating func insert(_ check: HealthCheck) {
        let key = CheckKey(node: check.node, checkID: check.checkID)
        remove(key)
        checks[key] = check
        checksByInstance[InstanceKey(node: check.node, id: check.serviceID), default: []].insert(check.checkID)
    }

    /// Takes a check out of the table and its index.
    @discardableResult
    mutating func remove(_ key: CheckKey) -> HealthCheck? {
        guard let existing = checks.removeValue(forKey: key) else { return nil }
        let owner = InstanceKey(node: key.node, id: existing.serviceID)
        checksByInstance[owner]?.remove(key.checkID)
        if checksByInstance[owner]?.isEmpty == true { checksByInstance[owner] = nil }
        return existing
    }

    // MARK: Reading

    /// IDs of the instances on `node`, unordered.
    func instanceIDs(onNode node: String) -> Set<String> { instancesByNode[node] ?? [] }

    /// Keys of the instances named `name`, unordered.
    func instanceKeys(named name: String) -> Set<InstanceKey> { instancesByName[name] ?? [] }

    /// IDs of the checks of one instance (`id` "": the node's own checks), unordered.
    func checkIDs(of instance: InstanceKey) -> Set<String> { checksByInstance[instance] ?? [] }

    /// Every service name, unordered.
    var serviceNames: Dictionary<String, Set<InstanceKey>>.Keys { instancesByName.keys }
}
