import Foundation
@testable import Registry
import TrellisCore
import XCTest

/// Databases written by earlier releases (Fixtures/make-registry-db.sh) still load, whole.
final class RecordFixtureTests: XCTestCase {
    private static let session = "cbbc1bde-983e-4b19-839b-a2900fe01d93"

    /// Tables added after the first fixture was written, and after the second.
    private static let connectTables: Set<Table> = [.caRoot, .caConfig, .intention]
    private static let aclTables: Set<Table> = [.aclToken, .aclPolicy, .aclRole, .aclAuthMethod, .aclBindingRule, .aclBootstrap]

    private func loadFixture(_ name: String = "registry-v1.db") throws -> (RegistryState, [StoredRecord]) {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fixture-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        let copy = directory.appendingPathComponent("registry.db")
        try FileManager.default.copyItem(at: fixture, to: copy)
        let store = try SQLiteStore(path: copy.path)
        defer { store.close() }
        let records = try store.loadAll()
        return (try RegistryState(records: records), records)
    }

    func testEveryTableOfTheFixtureLoads() throws {
        let (state, records) = try loadFixture()
        XCTAssertEqual(Set(records.map(\.table)),
                       Set(Table.allCases).subtracting([.sessionRenewal]).subtracting(Self.connectTables).subtracting(Self.aclTables),
                       "the fixture has a record of every table a local store kept then")
        XCTAssertEqual(state.index, 15)

        let n2 = try XCTUnwrap(state.node("n2"))
        XCTAssertEqual(n2.id, "0d1c6b1a-3f1e-4c55-8f0d-3a2b1c4d5e6f")
        XCTAssertEqual(n2.address, "10.0.0.2")
        XCTAssertEqual(n2.meta, ["rack": "r1"])
        XCTAssertEqual(n2.taggedAddresses, ["lan": "10.0.0.2"])
        XCTAssertEqual(state.node("fixture")?.id, "5c9f1f8e-7d2b-4d8a-9a51-0f6f3d1e2a11")

        let web = try XCTUnwrap(state.instance(InstanceKey(node: "fixture", id: "web-1")))
        XCTAssertEqual(web.name, "web")
        XCTAssertEqual(web.tags, ["v1", "primary"])
        XCTAssertEqual(web.address, "10.0.0.5")
        XCTAssertEqual(web.port, 8080)
        XCTAssertEqual(web.meta, ["version": "1.2.3"])
        XCTAssertEqual(web.weights, .init(passing: 3, warning: 1))
        XCTAssertTrue(web.enableTagOverride)
        XCTAssertEqual(web.taggedAddresses["wan"], ServiceAddress(address: "198.51.100.5", port: 80))
        XCTAssertEqual(web.locality?.objectValue?.field("Zone")?.stringValue, "a")
        XCTAssertEqual(web.createIndex, 3)
        let proxy = try XCTUnwrap(state.instance(InstanceKey(node: "fixture", id: "web-proxy-1")))
        XCTAssertEqual(proxy.kind, "connect-proxy")
        XCTAssertEqual(proxy.connectTarget, "web")
        XCTAssertNil(proxy.connect)
        XCTAssertEqual(state.instance(InstanceKey(node: "n2", id: "db-1"))?.socketPath, "/run/db.sock")
        XCTAssertEqual(state.configServiceIDs, ["cache-1"])
        XCTAssertEqual(state.instances(named: "cache").map(\.port), [6379])

        let ttl = try XCTUnwrap(state.check(CheckKey(node: "fixture", checkID: "web-ttl")))
        XCTAssertEqual(ttl.status, .passing)
        XCTAssertEqual(ttl.notes, "heartbeat")
        XCTAssertEqual(ttl.definition.ttl, .seconds(30))
        XCTAssertEqual(ttl.serviceName, "web")
        let http = try XCTUnwrap(state.check(CheckKey(node: "fixture", checkID: "web-http")))
        XCTAssertEqual(http.definition.http, "http://127.0.0.1:1/health")
        XCTAssertEqual(http.definition.method, "HEAD")
        XCTAssertEqual(http.definition.header, ["X-Probe": ["1"]])
        XCTAssertEqual(http.definition.interval, .seconds(10))
        XCTAssertEqual(http.definition.timeout, .seconds(2))
        XCTAssertEqual(http.definition.deregisterCriticalServiceAfter, .seconds(5400))
        XCTAssertEqual(http.definition.successBeforePassing, 2)
        XCTAssertEqual(http.definition.failuresBeforeCritical, 3)
        XCTAssertEqual(state.check(CheckKey(node: "n2", checkID: "n2-alive"))?.status, .warning)

        XCTAssertEqual(state.kvEntry("app/config")?.value, Array("mode=blue".utf8))
        XCTAssertEqual(state.kvEntry("app/config")?.flags, 42)
        XCTAssertEqual(state.kvEntry("app/binary")?.value, [0x00, 0x01, 0xfe, 0xff])
        XCTAssertEqual(state.kvEntry("app/flags")?.flags, UInt64.max)
        XCTAssertNil(state.kvEntry("app/gone"))
        XCTAssertEqual(state.kvIndex("app/gone", recurse: false), 11, "the deletion's index survives as a tombstone")
        let leader = try XCTUnwrap(state.kvEntry("app/leader"))
        XCTAssertEqual(leader.session, Self.session)
        XCTAssertEqual(leader.lockIndex, 1)

        let session = try XCTUnwrap(state.session(Self.session))
        XCTAssertEqual(session.name, "leader")
        XCTAssertEqual(session.ttl, .seconds(3600))
        XCTAssertEqual(session.lockDelay, .seconds(5))
        XCTAssertEqual(session.behavior, .delete)
        XCTAssertEqual(session.nodeChecks, ["serfHealth"])
        XCTAssertEqual(session.serviceChecks, ["web-ttl"])

        XCTAssertEqual(state.coordinate(node: "n2")?.objectValue?.field("Vec")?.arrayValue?.first, .double(0.1))
        XCTAssertEqual(state.autopilotConfiguration.objectValue?.field("MaxTrailingLogs"), .int(500))
        XCTAssertEqual(state.autopilotConfiguration.objectValue?.field("CleanupDeadServers"), .bool(false))
        XCTAssertNotNil(state.configEntry(kind: "mesh", name: "mesh"))
        XCTAssertEqual(state.watchIndex(WatchKey.service("web")), 4, "the proxy for web moved its index")
    }

    func testTheSecondFixtureHasEveryTableAndItsCAAndIntentionsLoad() throws {
        let (state, records) = try loadFixture("registry-v2.db")
        XCTAssertEqual(Set(records.map(\.table)), Set(Table.allCases).subtracting([.sessionRenewal]).subtracting(Self.aclTables),
                       "the fixture has a record of every table a local store kept then")
        let configuration = try XCTUnwrap(state.caConfiguration)
        XCTAssertNotNil(UUID(uuidString: configuration.clusterID))
        XCTAssertEqual(configuration.leafTTL, .seconds(72 * 3600))
        let root = try XCTUnwrap(state.activeRoot)
        XCTAssertTrue(root.certificatePEM.hasPrefix("-----BEGIN CERTIFICATE-----"))
        XCTAssertTrue(root.privateKeyPEM.contains("PRIVATE KEY"))
        XCTAssertEqual(try CARootRecord.decode(CARootRecord.encode(root)), root)
        XCTAssertEqual(try CAConfigurationRecord.decode(CAConfigurationRecord.encode(configuration)), configuration)
        let byName = try XCTUnwrap(state.intention(source: "web", destination: "db"))
        XCTAssertEqual(byName.action, .deny)
        XCTAssertEqual(byName.description, "fixture")
        let withID = try XCTUnwrap(state.intention(source: "*", destination: "db"))
        XCTAssertFalse(withID.id.isEmpty)
        XCTAssertEqual(withID.meta, ["team": "a"])
        for intention in state.allIntentions { XCTAssertEqual(try IntentionRecord.decode(IntentionRecord.encode(intention)), intention) }
        let leaf = try CertificateAuthority.signLeaf(service: "web", trustDomain: configuration.trustDomain, datacenter: "dc1",
                                                     root: root, validFor: configuration.leafTTL, now: Date())
        XCTAssertEqual(leaf.rootID, root.id, "the stored root still signs")
    }

    func testTheThirdFixtureHasEveryTableAndItsACLRecordsLoad() throws {
        let (state, records) = try loadFixture("registry-v3.db")
        XCTAssertEqual(Set(records.map(\.table)), Set(Table.allCases).subtracting([.sessionRenewal]),
                       "the fixture has a record of every table a local store keeps")
        let token = try XCTUnwrap(state.aclToken(secret: "3f2e1d0c-9b8a-4776-8554-433221100fed"))
        XCTAssertEqual(token.accessorID, "6a1f1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b")
        XCTAssertEqual(token.description, "fixture token")
        XCTAssertEqual(token.serviceIdentities, [ACLServiceIdentity(serviceName: "web", datacenters: ["dc1"])])
        XCTAssertEqual(token.nodeIdentities, [ACLNodeIdentity(nodeName: "n2", datacenter: "dc1")])
        XCTAssertEqual(token.templatedPolicies.map(\.name), ["cache"])
        XCTAssertNotEqual(token.expirationTime, 0)
        let policy = try XCTUnwrap(state.aclPolicy(name: "fixture-kv"))
        XCTAssertEqual(token.policies.map(\.id), [policy.id])
        XCTAssertEqual(state.aclRole(name: "fixture-role")?.policies.map(\.id), [policy.id])
        XCTAssertEqual(state.aclToken(secret: "fixture-management-token")?.policies.map(\.id), [ACLPolicy.globalManagementID])
        XCTAssertNotNil(state.aclToken(accessorID: ACLToken.anonymousAccessorID))
        XCTAssertNotEqual(state.aclBootstrapIndex, 0)
        XCTAssertEqual(state.aclAuthMethod(name: "fixture-jwt")?.field("Type"), .string("jwt"))
        XCTAssertEqual(state.aclBindingRules.first?.field("BindName"), .string("web"))
        let authz = ACLAuthorizer(accessorID: token.accessorID, rules: state.aclRules(of: token, datacenter: "dc1"), defaultAllows: false)
        XCTAssertTrue(authz.allows(.key, "app/x", .write))
        XCTAssertTrue(authz.allows(.service, "db", .write), "through the role's service identity")
        XCTAssertTrue(authz.allows(.service, "cache", .write), "through the templated policy")
        for token in state.aclTokens { XCTAssertEqual(try ACLRecords.token.decode(ACLRecords.token.encode(token)), token) }
        for policy in state.aclPolicies { XCTAssertEqual(try ACLRecords.policy.decode(ACLRecords.policy.encode(policy)), policy) }
        for role in state.aclRoles { XCTAssertEqual(try ACLRecords.role.decode(ACLRecords.role.encode(role)), role) }
    }

    /// Every record the fixture holds, written again by today's codecs, reads back as the same value.
    func testTodaysCodecsRoundTripTheFixture() throws {
        let (state, _) = try loadFixture()
        for node in state.allNodes { XCTAssertEqual(try NodeRecord.decode(NodeRecord.encode(node)), node) }
        for service in state.allInstances { XCTAssertEqual(try ServiceRecord.decode(ServiceRecord.encode(service)), service) }
        for check in state.allChecks { XCTAssertEqual(try CheckRecord.decode(CheckRecord.encode(check)), check) }
        for entry in state.kvEntries(prefix: "") { XCTAssertEqual(try KVRecord.decode(KVRecord.encode(entry)), entry) }
        for session in state.allSessions { XCTAssertEqual(try SessionRecord.decode(SessionRecord.encode(session)), session) }
    }

    func testARecordOfANewerLayoutIsRefusedByName() {
        let newer = Array(#"{"RecordVersion":3,"Node":"n1","CheckID":"c1"}"#.utf8)
        XCTAssertThrowsError(try CheckRecord.decode(newer)) { error in
            XCTAssertEqual("\(error)", "stored check record: layout version 3 is newer than this registry reads (up to 2)")
        }
        XCTAssertThrowsError(try NodeRecord.decode(Array("not json".utf8))) { error in
            XCTAssertTrue("\(error)".hasPrefix("stored node record: invalid JSON"), "\(error)")
        }
        XCTAssertThrowsError(try IndexRecord.decode(Array("-1".utf8), table: .meta)) { error in
            XCTAssertEqual("\(error)", "stored meta record: an index must be an unsigned decimal number")
        }
    }
}
