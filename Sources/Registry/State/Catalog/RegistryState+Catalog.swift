import TrellisCore

/// The keys blocking queries park on. A write touches every key whose readers may see a change.
public enum WatchKey {
    public static let nodes = "nodes"
    public static let services = "services"
    public static let checks = "checks"
    public static func service(_ name: String) -> String { "svc:" + name }
    public static func node(_ name: String) -> String { "node:" + name }
}

/// A catalog record with Consul's raft indexes.
protocol IndexedRecord: Equatable {
    var createIndex: UInt64 { get set }
    var modifyIndex: UInt64 { get set }
}

extension Node: IndexedRecord {}
extension ServiceInstance: IndexedRecord {}
extension HealthCheck: IndexedRecord {}

/// Nodes, service instances and checks: Consul's catalog rules for writing and reading them.
extension RegistryState {
    // MARK: Writing

    public mutating func putNode(_ node: Node) {
        var node = node
        guard stamp(&node, replacing: catalog.nodes[node.name]) else { return }
        catalog.setNode(node)
        record(.put(table: .node, key: node.name, value: NodeRecord.encode(node)),
               touching: [WatchKey.nodes, WatchKey.services, WatchKey.node(node.name)]
                   + servicesOnNode(node.name).map(WatchKey.service))
    }

    public mutating func removeNode(_ name: String) {
        guard catalog.nodes[name] != nil else { return }
        for id in catalog.instanceIDs(onNode: name) { removeInstance(InstanceKey(node: name, id: id)) }
        for checkID in catalog.checkIDs(of: InstanceKey(node: name, id: "")) {
            removeCheck(CheckKey(node: name, checkID: checkID))
        }
        removeCoordinate(node: name)
        invalidateSessions(onNode: name)
        catalog.removeNode(name)
        record(.delete(table: .node, key: name), touching: [WatchKey.nodes, WatchKey.node(name)])
    }

    public mutating func putInstance(_ service: ServiceInstance) {
        var service = service
        let key = InstanceKey(node: service.node, id: service.id)
        let existing = catalog.instances[key]
        guard stamp(&service, replacing: existing) else { return }
        var touched = [WatchKey.services, WatchKey.node(service.node), WatchKey.service(service.name)]
            + (service.connectTarget.map { [WatchKey.service($0)] } ?? [])
        if let target = existing?.connectTarget { touched.append(WatchKey.service(target)) }
        if let existing, existing.name != service.name { touched.append(WatchKey.service(existing.name)) }
        catalog.insert(service)
        record(.put(table: .service, key: key.recordKey, value: ServiceRecord.encode(service)), touching: touched)
        for checkID in catalog.checkIDs(of: key) {
            guard var check = catalog.checks[CheckKey(node: key.node, checkID: checkID)] else { continue }
            check.serviceName = service.name
            check.serviceTags = service.tags
            putCheck(check)
        }
    }

    public mutating func removeInstance(_ key: InstanceKey) {
        guard let existing = catalog.remove(key) else { return }
        for checkID in catalog.checkIDs(of: key) { removeCheck(CheckKey(node: key.node, checkID: checkID)) }
        record(.delete(table: .service, key: key.recordKey),
               touching: [WatchKey.services, WatchKey.node(key.node), WatchKey.service(existing.name)]
                   + (existing.connectTarget.map { [WatchKey.service($0)] } ?? []))
    }

    public mutating func putCheck(_ check: HealthCheck) {
        var check = check
        let key = CheckKey(node: check.node, checkID: check.checkID)
        guard stamp(&check, replacing: catalog.checks[key]) else { return }
        catalog.insert(check)
        record(.put(table: .check, key: key.recordKey, value: CheckRecord.encode(check)), touching: checkWatchKeys(check))
        if check.status == .critical { invalidateSessions(linkedTo: key) }
    }

    /// Registers a check; re-registering keeps its current status and output unless a status was
    /// given explicitly, so that a service re-registering itself does not flap. Returns what was stored.
    public mutating func registerCheck(_ check: HealthCheck, explicitStatus: Bool) -> HealthCheck {
        var check = check
        if !explicitStatus, let existing = catalog.checks[CheckKey(node: check.node, checkID: check.checkID)] {
            check.status = existing.status
            check.output = existing.output
        }
        putCheck(check)
        return check
    }

    public mutating func removeCheck(_ key: CheckKey) {
        guard let existing = catalog.remove(key) else { return }
        record(.delete(table: .check, key: key.recordKey), touching: checkWatchKeys(existing))
        invalidateSessions(linkedTo: key)
    }

    /// Gives `record` the indexes of this write: it keeps the create index of the record it replaces,
    /// and takes the write's index as its modify index. False when it equals the record it replaces.
    private func stamp<Record: IndexedRecord>(_ record: inout Record, replacing existing: Record?) -> Bool {
        guard let existing else {
            record.createIndex = writeIndex
            record.modifyIndex = writeIndex
            return true
        }
        record.createIndex = existing.createIndex
        record.modifyIndex = existing.modifyIndex
        if record == existing { return false }
        record.modifyIndex = writeIndex
        return true
    }

    private func servicesOnNode(_ node: String) -> [String] {
        catalog.instanceIDs(onNode: node).compactMap { catalog.instances[InstanceKey(node: node, id: $0)]?.name }
    }

    private func checkWatchKeys(_ check: HealthCheck) -> [String] {
        let services = check.serviceID.isEmpty
            ? servicesOnNode(check.node)
            : [catalog.instances[InstanceKey(node: check.node, id: check.serviceID)]?.name ?? check.serviceName]
        return [WatchKey.checks, WatchKey.node(check.node)] + services.map(WatchKey.service)
    }

    // MARK: Reading

    public func node(_ name: String) -> Node? { catalog.nodes[name] }
    public func instance(_ key: InstanceKey) -> ServiceInstance? { catalog.instances[key] }
    public func check(_ key: CheckKey) -> HealthCheck? { catalog.checks[key] }

    public var allNodes: [Node] { catalog.nodes.values.sorted { $0.name < $1.name } }
    public var allChecks: [HealthCheck] { catalog.checks.values.sorted(by: Self.checkOrder) }
    public var instanceCount: Int { catalog.instances.count }
    public var allInstances: [ServiceInstance] { Array(catalog.instances.values) }
    public var serviceCount: Int { catalog.serviceNames.count }

    /// How many checks are in each status, without sorting or copying them.
    public func checkCountsByStatus() -> [HealthStatus: Int] {
        var counts: [HealthStatus: Int] = [:]
        for check in catalog.checks.values { counts[check.status, default: 0] += 1 }
        return counts
    }

    static func checkOrder(_ a: HealthCheck, _ b: HealthCheck) -> Bool {
        (a.node, a.checkID) < (b.node, b.checkID)
    }

    public func instances(onNode node: String) -> [ServiceInstance] {
        catalog.instanceIDs(onNode: node).compactMap { catalog.instances[InstanceKey(node: node, id: $0)] }.sorted { $0.id < $1.id }
    }

    /// Instances of `name`, ordered by node then service ID, as Consul orders them.
    public func instances(named name: String) -> [ServiceInstance] {
        catalog.instanceKeys(named: name).compactMap { catalog.instances[$0] }.sorted { ($0.node, $0.id) < ($1.node, $1.id) }
    }

    /// The checks of one instance; `id` "" gives the node's own checks.
    public func checks(node: String, serviceID: String) -> [HealthCheck] {
        catalog.checkIDs(of: InstanceKey(node: node, id: serviceID))
            .compactMap { catalog.checks[CheckKey(node: node, checkID: $0)] }
            .sorted(by: Self.checkOrder)
    }

    public func checks(onNode node: String) -> [HealthCheck] {
        catalog.checks.values.filter { $0.node == node }.sorted(by: Self.checkOrder)
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
        guard let node = catalog.nodes[instance.node] else { return nil }
        return HealthEntry(node: node, service: instance,
                           checks: checks(node: instance.node, serviceID: "") + checks(node: instance.node, serviceID: instance.id))
    }

    /// Health entries of the instances that accept mesh traffic for `name` (`/v1/health/connect/:name`).
    public func connectEntries(service name: String) -> [HealthEntry] {
        catalog.instances.values.filter { $0.connectTarget == name }
            .sorted { ($0.node, $0.id) < ($1.node, $1.id) }
            .compactMap(healthEntry)
    }

    /// Every service name with the union of its instances' tags; with `including`, only the names
    /// (and tags) of the instances it accepts.
    public func serviceTags(including: (ServiceInstance) -> Bool = { _ in true }) -> [(name: String, tags: [String])] {
        catalog.serviceNames.sorted().compactMap { name in
            let accepted = instances(named: name).filter(including)
            guard !accepted.isEmpty else { return nil }
            var seen = Set<String>()
            return (name, accepted.flatMap(\.tags).filter { seen.insert($0).inserted })
        }
    }
}
