@testable import Registry
import TrellisCore
import XCTest

final class CatalogStateTests: XCTestCase {
    private func instance(_ id: String, _ name: String, node: String = "n1", tags: [String] = []) -> ServiceInstance {
        var s = ServiceInstance(node: node, id: id, name: name)
        s.tags = tags
        s.port = 80
        return s
    }

    private func check(_ id: String, service: String = "", status: HealthStatus, node: String = "n1") -> HealthCheck {
        var c = HealthCheck(node: node, checkID: id, name: id)
        c.serviceID = service
        c.status = status
        return c
    }

    private func seeded() throws -> RegistryState {
        var state = RegistryState()
        _ = try state.write { (s: inout RegistryState) throws(CatalogError) in
            s.putNode(Node(id: "id-1", name: "n1", address: "10.0.0.1", datacenter: "dc1"))
        }
        return state
    }

    func testIndexIsNeverZeroAndGrowsByOnePerWrite() throws {
        var state = RegistryState()
        XCTAssertEqual(state.watchIndex(WatchKey.services), 1, "an empty catalog still answers index 1")
        _ = try state.write { (s: inout RegistryState) throws(CatalogError) in
            s.putNode(Node(id: "id-1", name: "n1", address: "10.0.0.1", datacenter: "dc1"))
        }
        XCTAssertEqual(state.index, 1)
        let (_, effect) = try state.write { (s: inout RegistryState) throws(CatalogError) in
            s.putInstance(self.instance("web1", "web"))
            s.putCheck(self.check("c1", service: "web1", status: .passing))
        }
        XCTAssertEqual(state.index, 2, "one write, however many records, is one index step")
        XCTAssertEqual(effect?.index, 2)
        XCTAssertEqual(state.instance(InstanceKey(node: "n1", id: "web1"))?.createIndex, 2)
    }

    func testNoOpWriteDoesNotAdvanceIndex() throws {
        var state = try seeded()
        let before = state.index
        let (_, effect) = try state.write { (s: inout RegistryState) throws(CatalogError) in
            s.putNode(Node(id: "id-1", name: "n1", address: "10.0.0.1", datacenter: "dc1"))
        }
        XCTAssertNil(effect)
        XCTAssertEqual(state.index, before)
    }

    func testFailedWriteChangesNothing() throws {
        var state = try seeded()
        let before = state.index
        XCTAssertThrowsError(try state.write { (s: inout RegistryState) throws(CatalogError) in
            throw .badRequest("no")
        })
        XCTAssertEqual(state.index, before)
    }

    func testWatchIndexMovesOnlyForTheServiceThatChanged() throws {
        var state = try seeded()
        _ = try state.write { (s: inout RegistryState) throws(CatalogError) in
            s.putInstance(self.instance("web1", "web"))
            s.putInstance(self.instance("db1", "db"))
        }
        let webBefore = state.watchIndex(WatchKey.service("web"))
        let (_, effect) = try state.write { (s: inout RegistryState) throws(CatalogError) in
            s.putCheck(self.check("c-db", service: "db1", status: .critical))
        }
        XCTAssertEqual(state.watchIndex(WatchKey.service("web")), webBefore)
        XCTAssertEqual(state.watchIndex(WatchKey.service("db")), state.index)
        XCTAssertTrue(effect!.touched.contains(WatchKey.service("db")))
        XCTAssertFalse(effect!.touched.contains(WatchKey.service("web")))
    }

    func testNodeCheckTouchesEveryServiceOnTheNode() throws {
        var state = try seeded()
        _ = try state.write { (s: inout RegistryState) throws(CatalogError) in
            s.putInstance(self.instance("web1", "web"))
            s.putInstance(self.instance("db1", "db"))
        }
        let (_, effect) = try state.write { (s: inout RegistryState) throws(CatalogError) in
            s.putCheck(self.check("serfHealth", status: .critical))
        }
        XCTAssertTrue(effect!.touched.isSuperset(of: [WatchKey.service("web"), WatchKey.service("db")]))
    }

    func testHealthEntriesAreOrderedByNodeThenIDWithNodeChecksFirst() throws {
        var state = try seeded()
        _ = try state.write { (s: inout RegistryState) throws(CatalogError) in
            s.putNode(Node(id: "id-0", name: "n0", address: "10.0.0.0", datacenter: "dc1"))
            s.putInstance(self.instance("web-b", "web"))
            s.putInstance(self.instance("web-a", "web"))
            s.putInstance(self.instance("web-z", "web", node: "n0"))
            s.putCheck(self.check("serfHealth", status: .passing))
            s.putCheck(self.check("svc", service: "web-a", status: .warning))
        }
        let entries = state.healthEntries(service: "web")
        XCTAssertEqual(entries.map(\.service.id), ["web-z", "web-a", "web-b"])
        XCTAssertEqual(state.instances(named: "web").map(\.id), ["web-z", "web-a", "web-b"])
        XCTAssertEqual(entries[1].checks.map(\.checkID), ["serfHealth", "svc"])
        XCTAssertEqual(HealthStatus.aggregate(entries[1].checks.map(\.status)), .warning)
    }

    func testDeregisteringAnInstanceRemovesItsChecksAndKeepsItsIndex() throws {
        var state = try seeded()
        _ = try state.write { (s: inout RegistryState) throws(CatalogError) in
            s.putInstance(self.instance("web1", "web"))
            s.putCheck(self.check("c1", service: "web1", status: .passing))
        }
        _ = try state.write { (s: inout RegistryState) throws(CatalogError) in
            s.removeInstance(InstanceKey(node: "n1", id: "web1"))
        }
        XCTAssertNil(state.check(CheckKey(node: "n1", checkID: "c1")))
        XCTAssertEqual(state.watchIndex(WatchKey.service("web")), state.index,
                       "a watcher of a vanished service must see the index move, not fall back")
        XCTAssertTrue(state.serviceTags().isEmpty)
    }

    func testAggregationOrder() {
        XCTAssertEqual(HealthStatus.aggregate([.passing, .warning, .critical]), .critical)
        XCTAssertEqual(HealthStatus.aggregate([.passing, .warning]), .warning)
        XCTAssertEqual(HealthStatus.aggregate([]), .passing)
    }

    func testStateRebuildsFromItsOwnRecords() throws {
        var state = try seeded()
        var records: [String: StoredRecord] = [:]
        func apply(_ effect: WriteEffect?) {
            for op in effect?.ops ?? [] {
                switch op {
                case .put(let t, let k, let v): records[t.rawValue + "\u{0}" + k] = StoredRecord(table: t, key: k, value: v)
                case .delete(let t, let k): records[t.rawValue + "\u{0}" + k] = nil
                }
            }
        }
        var s2 = RegistryState()
        apply(try s2.write { (s: inout RegistryState) throws(CatalogError) in
            s.putNode(Node(id: "id-1", name: "n1", address: "10.0.0.1", datacenter: "dc1"))
        }.1)
        var web = instance("web1", "web", tags: ["v1"])
        web.meta = ["k": "v"]
        var ttl = check("c1", service: "web1", status: .warning)
        ttl.definition.ttl = .seconds(15)
        ttl.definition.deregisterCriticalServiceAfter = .seconds(90)
        apply(try s2.write { (s: inout RegistryState) throws(CatalogError) in
            s.putInstance(web)
            s.putCheck(ttl)
        }.1)
        state = s2
        let rebuilt = try RegistryState(records: Array(records.values))
        XCTAssertEqual(rebuilt.index, state.index)
        XCTAssertEqual(rebuilt.instance(InstanceKey(node: "n1", id: "web1")), state.instance(InstanceKey(node: "n1", id: "web1")))
        XCTAssertEqual(rebuilt.check(CheckKey(node: "n1", checkID: "c1")), state.check(CheckKey(node: "n1", checkID: "c1")))
        XCTAssertEqual(rebuilt.watchIndex(WatchKey.service("web")), state.watchIndex(WatchKey.service("web")))
    }
    /// A registry sharing a store applies the records other registries commit; it must end up in
    /// exactly the state of the registry that wrote them, write after write.
    func testAFollowerApplyingCommittedRecordsMatchesTheWriter() throws {
        var writer = RegistryState()
        var follower = RegistryState()
        let now = ContinuousClock.now
        func step(_ body: (inout RegistryState) throws(CatalogError) -> Void) throws {
            let (_, effect) = try writer.write(body)
            // A session's end comes first, as the shared store hands it over.
            let ops = (effect?.ops ?? []).sorted { $0.endsSession && !$1.endsSession }
            for op in ops { _ = try follower.apply(op, now: now) }
            XCTAssertEqual(follower.index, writer.index)
            XCTAssertEqual(follower.allNodes, writer.allNodes)
            XCTAssertEqual(follower.allChecks, writer.allChecks)
            for name in ["web", "api"] {
                XCTAssertEqual(follower.instances(named: name), writer.instances(named: name))
                XCTAssertEqual(follower.watchIndex(WatchKey.service(name)), writer.watchIndex(WatchKey.service(name)))
                XCTAssertEqual(follower.checks(ofService: name), writer.checks(ofService: name))
            }
            XCTAssertEqual(follower.instances(onNode: "n1"), writer.instances(onNode: "n1"))
            XCTAssertEqual(follower.kvEntries(prefix: ""), writer.kvEntries(prefix: ""))
            XCTAssertEqual(follower.kvIndex("lock", recurse: false), writer.kvIndex("lock", recurse: false))
            XCTAssertEqual(follower.allSessions, writer.allSessions)
            XCTAssertEqual(follower.isLockDelayed("lock", now: now), writer.isLockDelayed("lock", now: now))
        }
        try step { $0.putNode(Node(id: "id-1", name: "n1", address: "10.0.0.1", datacenter: "dc1")) }
        try step {
            $0.putInstance(self.instance("web1", "web", tags: ["v1"]))
            $0.putCheck(self.check("c1", service: "web1", status: .passing))
            $0.putCheck(self.check("node-check", status: .passing))
        }
        try step { $0.putInstance(self.instance("web1", "api", tags: ["v2"])) }
        try step { $0.putCheck(self.check("c1", service: "web1", status: .warning)) }
        var session = Session(id: "s1", node: "n1")
        session.lockDelay = .seconds(30)
        session.nodeChecks = ["node-check"]
        try step { $0.putSession(session, now: now) }
        try step { state throws(CatalogError) in
            _ = try state.applyKVWrite(key: "lock", value: [1], flags: 0, cas: nil, op: .lock(session: "s1"), now: now)
        }
        try step { $0.putKV(KVEntry(key: "config/a", value: Array("x".utf8))) }
        try step { $0.putCheck(self.check("node-check", status: .critical)) }
        XCTAssertTrue(follower.isLockDelayed("lock", now: now), "the invalidated session's lock-delay reaches the follower")
        try step { $0.deleteKV("config/a") }
        try step { $0.removeCheck(CheckKey(node: "n1", checkID: "c1")) }
        try step { $0.removeInstance(InstanceKey(node: "n1", id: "web1")) }
        try step { $0.removeNode("n1") }
    }
}
