@testable import Registry
import TrellisCore
import XCTest

/// Consul's KV rules on the pure state: CAS, locks, lock-delay, sessions and the twelve
/// transaction verbs, each case in milliseconds (KVTests proves the same through the binary).
final class KVStateTests: XCTestCase {
    private let now = ContinuousClock.now

    /// A state with node `n1` (check `serfHealth` passing), key `a` = "1" and session `s1` on `n1`.
    private func seeded(lockDelay: Duration = .seconds(15), behavior: Session.Behavior = .release) throws -> RegistryState {
        var state = RegistryState()
        _ = try state.write { [now] (s: inout RegistryState) throws(CatalogError) in
            s.putNode(Node(id: "id-1", name: "n1", address: "10.0.0.1", datacenter: "dc1"))
            var serf = HealthCheck(node: "n1", checkID: "serfHealth", name: "Serf")
            serf.status = .passing
            s.putCheck(serf)
            s.putKV(KVEntry(key: "a", value: Array("1".utf8)))
            var session = Session(id: "s1", node: "n1")
            session.nodeChecks = ["serfHealth"]
            session.lockDelay = lockDelay
            session.behavior = behavior
            s.putSession(session, now: now)
        }
        return state
    }

    private func kvWrite(_ state: inout RegistryState, _ key: String, cas: UInt64? = nil, _ op: KVWrite = .set,
                         at instant: ContinuousClock.Instant? = nil) throws -> Bool {
        let when = instant ?? now
        return try state.write { (s: inout RegistryState) throws(CatalogError) in
            try s.applyKVWrite(key: key, value: Array("v".utf8), flags: 0, cas: cas, op: op, now: when)
        }.0
    }

    func testCASOnZeroCreatesOnlyAbsentKeysAndCASOnNMatchesTheModifyIndex() throws {
        var state = try seeded()
        let index = try XCTUnwrap(state.kvEntry("a")?.modifyIndex)
        let cases: [(key: String, cas: UInt64, succeeds: Bool)] = [
            ("a", 0, false), ("b", 0, true), ("a", index + 100, false), ("a", index, true), ("a", index, false),
        ]
        for (key, cas, succeeds) in cases {
            XCTAssertEqual(try kvWrite(&state, key, cas: cas), succeeds, "cas=\(cas) on \(key)")
        }
        XCTAssertEqual(state.kvEntry("a")?.createIndex, index, "a CAS update keeps the create index")
    }

    func testLockAcquireReleaseAndLockDelay() throws {
        var state = try seeded(lockDelay: .seconds(10))
        XCTAssertTrue(try kvWrite(&state, "lock", .lock(session: "s1")))
        XCTAssertEqual(state.kvEntry("lock")?.lockIndex, 1)
        XCTAssertTrue(try kvWrite(&state, "lock", .lock(session: "s1")), "re-acquiring by the holder succeeds")
        XCTAssertEqual(state.kvEntry("lock")?.lockIndex, 1, "and does not count as a new lock")
        XCTAssertFalse(try kvWrite(&state, "lock", .unlock(session: "other")))
        XCTAssertTrue(try kvWrite(&state, "lock", .unlock(session: "s1")))
        XCTAssertEqual(state.kvEntry("lock")?.session, "")
        XCTAssertThrowsError(try kvWrite(&state, "lock", .lock(session: "nope"))) { error in
            XCTAssertEqual(error as? CatalogError, .rejected("invalid session \"nope\""))
        }
        XCTAssertThrowsError(try kvWrite(&state, "lock", .lock(session: ""))) { error in
            XCTAssertEqual(error as? CatalogError, .rejected("missing session"))
        }

        XCTAssertTrue(try kvWrite(&state, "lock", .lock(session: "s1")))
        _ = try state.write { [now] (s: inout RegistryState) throws(CatalogError) in s.destroySession("s1", now: now) }
        XCTAssertEqual(state.kvEntry("lock")?.session, "", "behavior release frees the key")
        XCTAssertTrue(state.isLockDelayed("lock", now: now + .seconds(9)))
        XCTAssertFalse(state.isLockDelayed("lock", now: now + .seconds(10)))
        _ = try state.write { [now] (s: inout RegistryState) throws(CatalogError) in s.putSession(Session(id: "s2", node: "n1"), now: now) }
        XCTAssertFalse(try kvWrite(&state, "lock", .lock(session: "s2"), at: now + .seconds(5)), "refused during lock-delay")
        XCTAssertTrue(try kvWrite(&state, "lock", .lock(session: "s2"), at: now + .seconds(11)))
    }

    func testSessionWithBehaviorDeleteDeletesItsKeysAndLeavesTombstones() throws {
        var state = try seeded(lockDelay: .zero, behavior: .delete)
        XCTAssertTrue(try kvWrite(&state, "held", .lock(session: "s1")))
        _ = try state.write { [now] (s: inout RegistryState) throws(CatalogError) in s.destroySession("s1", now: now) }
        XCTAssertNil(state.kvEntry("held"))
        XCTAssertEqual(state.kvIndex("held", recurse: false), state.index)
        XCTAssertFalse(state.isLockDelayed("held", now: now), "no lock-delay when it is zero")
    }

    func testSessionsAreInvalidatedByTheirCheckTheirNodeAndTheirTTL() throws {
        let invalidations: [(what: String, change: (inout RegistryState) -> Void)] = [
            ("linked check goes critical", { s in
                var serf = HealthCheck(node: "n1", checkID: "serfHealth", name: "Serf")
                serf.status = .critical
                s.putCheck(serf)
            }),
            ("linked check is removed", { s in s.removeCheck(CheckKey(node: "n1", checkID: "serfHealth")) }),
            ("node is deregistered", { s in s.removeNode("n1") }),
        ]
        for (what, change) in invalidations {
            var state = try seeded()
            XCTAssertTrue(try kvWrite(&state, "lock", .lock(session: "s1")))
            _ = try state.write { (s: inout RegistryState) throws(CatalogError) in change(&s) }
            XCTAssertNil(state.session("s1"), what)
            XCTAssertNotEqual(state.kvEntry("lock")?.session, "s1", what)
        }

        var state = try seeded()
        _ = try state.write { [now] (s: inout RegistryState) throws(CatalogError) in
            var session = Session(id: "ttl", node: "n1")
            session.ttl = .seconds(10)
            s.putSession(session, now: now)
        }
        XCTAssertEqual(state.expiredSessions(at: now + .seconds(19)), [], "a session lives twice its TTL")
        XCTAssertEqual(state.expiredSessions(at: now + .seconds(20)), ["ttl"])
        XCTAssertNotNil(state.renewSession("ttl", now: now + .seconds(15)))
        XCTAssertEqual(state.expiredSessions(at: now + .seconds(30)), [], "a renewal starts the two TTLs again")
        XCTAssertEqual(state.expiredSessions(at: now + .seconds(35)), ["ttl"])
    }

    func testSessionWithoutChecksSurvivesACheckFailureButNotItsNode() throws {
        var state = try seeded()
        _ = try state.write { [now] (s: inout RegistryState) throws(CatalogError) in s.putSession(Session(id: "bare", node: "n1"), now: now) }
        _ = try state.write { (s: inout RegistryState) throws(CatalogError) in
            var serf = HealthCheck(node: "n1", checkID: "serfHealth", name: "Serf")
            serf.status = .critical
            s.putCheck(serf)
        }
        XCTAssertNotNil(state.session("bare"))
        XCTAssertNil(state.session("s1"))
        _ = try state.write { (s: inout RegistryState) throws(CatalogError) in s.removeNode("n1") }
        XCTAssertNil(state.session("bare"))
    }

    // MARK: Transactions

    private func op(_ verb: KVTxnOp.Verb, _ key: String, value: String = "x", index: UInt64 = 0, session: String = "") -> KVTxnOp {
        KVTxnOp(verb: verb, key: key, value: Array(value.utf8), flags: 7, index: index, session: session)
    }

    /// One case per verb: the operation, and the failure Consul reports (nil: it succeeds).
    private func verbCases(_ state: RegistryState) -> [(op: KVTxnOp, failure: String?)] {
        let a = state.kvEntry("a")!.modifyIndex
        return [
            (op(.set, "new"), nil),
            (op(.cas, "a", index: a), nil),
            (op(.cas, "a", index: a + 1), "failed to set key \"a\", index is stale"),
            (op(.cas, "absent", index: 0), nil),
            (op(.lock, "a", session: "s1"), nil),
            (op(.lock, "a", session: ""), "missing session"),
            (op(.lock, "a", session: "nope"), "invalid session \"nope\""),
            (op(.unlock, "a", session: "s1"), "failed to unlock key \"a\", lock isn't held, or is held by another session"),
            (op(.get, "a"), nil),
            (op(.get, "absent"), "key \"absent\" doesn't exist"),
            (op(.getTree, ""), nil),
            (op(.checkIndex, "a", index: a), nil),
            (op(.checkIndex, "a", index: a + 1), "current modify index \(a) != \(a + 1)"),
            (op(.checkSession, "a", session: ""), nil),
            (op(.checkSession, "a", session: "s1"), "current session \"\" != \"s1\""),
            (op(.checkNotExists, "absent"), nil),
            (op(.checkNotExists, "a"), "key \"a\" exists"),
            (op(.delete, "absent"), nil),
            (op(.deleteTree, "a"), nil),
            (op(.deleteCAS, "a", index: a), nil),
            (op(.deleteCAS, "a", index: a + 1), "failed to delete key \"a\", index is stale"),
        ]
    }

    func testEachTransactionVerbAlone() throws {
        let seededState = try seeded()
        let cases = verbCases(seededState)
        XCTAssertEqual(Set(cases.map(\.op.verb.rawValue)).count, 12, "every verb has a case")
        for (op, failure) in cases {
            var state = seededState
            let outcome = try state.write { [now] (s: inout RegistryState) throws(CatalogError) in s.applyKVTxn([op], now: now) }.0
            switch (outcome, failure) {
            case (.committed, nil): break
            case (.rolledBack(let errors), let expected?):
                XCTAssertEqual(errors.map(\.what), [expected], "\(op.verb) \(op.key)")
                XCTAssertEqual(errors.map(\.index), [0])
                XCTAssertEqual(state.index, seededState.index, "a failed transaction changes nothing")
            default:
                XCTFail("\(op.verb) \(op.key): \(outcome), expected \(failure ?? "success")")
            }
        }
    }

    func testVerbEffects() throws {
        var state = try seeded()
        let a = try XCTUnwrap(state.kvEntry("a")?.modifyIndex)
        let outcome = try state.write { [now] (s: inout RegistryState) throws(CatalogError) in
            s.applyKVTxn([
                self.op(.set, "b/1", value: "one"), self.op(.set, "b/2", value: "two"),
                self.op(.cas, "a", value: "2", index: a), self.op(.lock, "b/1", session: "s1"),
                self.op(.get, "b/1"), self.op(.deleteTree, "b/2"), self.op(.getTree, "b/"),
            ], now: now)
        }.0
        guard case .committed(let results) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertEqual(state.kvEntry("a")?.value, Array("2".utf8))
        XCTAssertEqual(state.kvEntry("b/1")?.session, "s1")
        XCTAssertEqual(state.kvEntry("b/1")?.flags, 7)
        XCTAssertNil(state.kvEntry("b/2"))
        let keys = results.compactMap { $0.objectValue?.field("KV")?.objectValue?.field("Key")?.stringValue }
        XCTAssertEqual(keys, ["b/1", "b/2", "a", "b/1", "b/1", "b/1"], "set, set, cas, lock, get and get-tree each report their keys")
        let got = results[4].objectValue?.field("KV")?.objectValue
        XCTAssertEqual(got?.field("Value")?.stringValue, Base64.encode(Array("x".utf8)), "get returns the value the lock wrote")
        XCTAssertEqual(results[0].objectValue?.field("KV")?.objectValue?.field("Value"), .null, "set does not")
    }

    func testLaterOperationsSeeEarlierOnesAndAnyFailureRollsBackAll() throws {
        var state = try seeded()
        let before = state.index
        let outcome = try state.write { [now] (s: inout RegistryState) throws(CatalogError) in
            s.applyKVTxn([self.op(.set, "fresh"), self.op(.checkNotExists, "fresh"), self.op(.delete, "a"),
                          self.op(.get, "a")], now: now)
        }.0
        guard case .rolledBack(let errors) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertEqual(errors.map(\.index), [1, 3])
        XCTAssertEqual(errors.map(\.what), ["key \"fresh\" exists", "key \"a\" doesn't exist"])
        XCTAssertEqual(state.index, before)
        XCTAssertNil(state.kvEntry("fresh"))
        XCTAssertNotNil(state.kvEntry("a"))
    }
}
