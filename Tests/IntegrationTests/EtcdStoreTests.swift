import Foundation
import TrellisCore
import XCTest

/// Several `trellis registry` processes sharing one real etcd (`--store etcd`).
final class EtcdStoreTests: XCTestCase {
    private func registry(_ etcd: EtcdUnderTest, node: String, prefix: String = "trellis/test/",
                          extra: [String] = []) async throws -> RegistryUnderTest {
        let registry = RegistryUnderTest(dataDir: try temporaryDirectory(self), node: node,
                                         arguments: ["--store", "etcd", "--etcd-endpoints", etcd.endpoint, "--etcd-prefix", prefix] + extra)
        try await registry.start()
        addTeardownBlock { registry.child?.kill9() }
        return registry
    }

    private func index(_ headers: [String: String]) throws -> UInt64 {
        try XCTUnwrap(headers["x-consul-index"].flatMap(UInt64.init))
    }

    func testRegistriesSharingEtcdSignWithOneRootAndShareIntentions() async throws {
        let etcd = try await EtcdUnderTest(self)
        let a = try await registry(etcd, node: "node-a")
        let b = try await registry(etcd, node: "node-b")
        let rootsA = try await a.json("/v1/connect/ca/roots")
        let rootsB = try await b.json("/v1/connect/ca/roots")
        XCTAssertEqual(rootsA["ActiveRootID"], rootsB["ActiveRootID"], "the second registry found the first one's root")
        XCTAssertEqual(rootsA["TrustDomain"], rootsB["TrustDomain"])
        XCTAssertEqual(rootsB["Roots"]?.arrayValue?.count, 1)

        let (_, headers, _) = try await b.get("/v1/connect/intentions")
        let before = try index(headers)
        async let woken = b.get("/v1/connect/intentions?index=\(before)&wait=20s")
        try await Task.sleep(for: .milliseconds(300))
        let stored = try await a.put("/v1/connect/intentions/exact?source=web&destination=db", #"{"Action":"deny"}"#)
        XCTAssertEqual(String(decoding: stored.body, as: UTF8.self), "true")
        let (_, _, body) = try await woken
        XCTAssertEqual(try JSON.parse(body)[0]?["Action"], .string("deny"))
        let check = try await b.json("/v1/connect/intentions/check?source=web&destination=db")
        XCTAssertEqual(check["Allowed"], .bool(false))
    }

    func testACLTokensAndPoliciesApplyAtOnceOnEveryRegistryOfTheStore() async throws {
        let etcd = try await EtcdUnderTest(self)
        let acl = ["--acl-enabled", "--acl-default-policy", "deny", "--acl-initial-management-token", "root-secret"]
        let a = try await registry(etcd, node: "node-a", extra: acl)
        let b = try await registry(etcd, node: "node-b", extra: acl)
        func send(_ registry: RegistryUnderTest, _ token: String, _ method: String, _ path: String, _ body: String? = nil) async throws -> ACLAnswer {
            try await aclRequest(registry.address, token, method, path, body)
        }
        let listed = try await send(b, "root-secret", "GET", "/v1/acl/tokens")
        let tokens = try JSON.parse(listed.text)
        XCTAssertEqual(tokens.arrayValue?.count, 2, "one anonymous and one management token, not one per registry")
        let policy = try await send(a, "root-secret", "PUT", "/v1/acl/policy", #"{"Name":"app","Rules":"key_prefix \"app/\" { policy = \"write\" }"}"#)
        XCTAssertEqual(policy.status, 200, policy.text)
        let created = try await send(a, "root-secret", "PUT", "/v1/acl/token", #"{"Policies":[{"Name":"app"}]}"#)
        let secret = try XCTUnwrap(try JSON.parse(created.text)["SecretID"]?.stringValue)
        let accessor = try XCTUnwrap(try JSON.parse(created.text)["AccessorID"]?.stringValue)
        try await eventually(timeout: 5, "the token made on one registry works on the other") {
            try await send(b, secret, "PUT", "/v1/kv/app/x", "v").status == 200
        }
        let refused = try await send(b, secret, "PUT", "/v1/kv/other", "v")
        XCTAssertEqual(refused.status, 403)
        let deleted = try await send(a, "root-secret", "DELETE", "/v1/acl/token/\(accessor)")
        XCTAssertEqual(deleted.status, 200)
        try await eventually(timeout: 5, "the deleted token is refused on the other registry") {
            try await send(b, secret, "PUT", "/v1/kv/app/x", "v").text == "ACL not found"
        }
    }

    func testRegistriesSharingEtcdServeOneCatalogAndWakeEachOthersBlockingQueries() async throws {
        let etcd = try await EtcdUnderTest(self)
        let a = try await registry(etcd, node: "node-a")
        let b = try await registry(etcd, node: "node-b")

        // Each registry's own node is in the one catalog both serve.
        let nodes = try await b.json("/v1/catalog/nodes").arrayValue!.compactMap { $0["Node"]?.stringValue }
        XCTAssertEqual(Set(nodes), ["node-a", "node-b"])

        // A blocking query parked on B wakes for a registration made through A.
        let (_, headers, _) = try await b.get("/v1/health/service/web")
        let before = try index(headers)
        async let woken = b.get("/v1/health/service/web?index=\(before)&wait=20s")
        try await Task.sleep(for: .milliseconds(300))
        let registered = try await a.put("/v1/agent/service/register", #"{"Name":"web","ID":"web-1","Port":8080,"Tags":["v1"]}"#)
        XCTAssertEqual(registered.status, 200)
        let (status, wokenHeaders, body) = try await woken
        XCTAssertEqual(status, 200)
        XCTAssertGreaterThan(try index(wokenHeaders), before)
        let entry = try JSON.parse(body)[0]
        XCTAssertEqual(entry?["Service"]?["ID"]?.stringValue, "web-1")
        XCTAssertEqual(entry?["Node"]?["Node"]?.stringValue, "node-a")

        // Writes through either registry land in one sequence of indexes both agree on.
        for i in 0..<10 {
            let target = i % 2 == 0 ? a : b
            let put = try await target.put("/v1/kv/config/key\(i)", "value \(i)")
            XCTAssertEqual(put.status, 200)
        }
        let (_, aHeaders, aBody) = try await a.get("/v1/kv/config/?recurse")
        let (_, bHeaders, bBody) = try await b.get("/v1/kv/config/?recurse")
        XCTAssertEqual(try index(aHeaders), try index(bHeaders))
        XCTAssertEqual(aBody, bBody, "both registries render the same entries with the same indexes")
        XCTAssertEqual(try JSON.parse(aBody).arrayValue?.count, 10)
    }

    func testCheckAndSetFromTwoRegistriesAtOnceNeverLosesAnUpdate() async throws {
        let etcd = try await EtcdUnderTest(self)
        let registries = [try await registry(etcd, node: "node-a"), try await registry(etcd, node: "node-b")]
        let seeded = try await registries[0].put("/v1/kv/counter", "0")
        XCTAssertEqual(seeded.status, 200)

        // 4 clients per registry each add 10 to a counter with read-modify-CAS, retrying when they lose.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<8 {
                let registry = registries[client % 2]
                group.addTask {
                    var added = 0
                    while added < 10 {
                        let (_, headers, body) = try await registry.get("/v1/kv/counter?raw")
                        let value = Int(String(decoding: body, as: UTF8.self))!
                        let modify = headers["x-consul-index"]!
                        let (_, _, answer) = try await registry.put("/v1/kv/counter?cas=\(modify)", String(value + 1))
                        if String(decoding: answer, as: UTF8.self) == "true" { added += 1 }
                    }
                }
            }
            try await group.waitForAll()
        }
        for registry in registries {
            let (_, _, body) = try await registry.get("/v1/kv/counter?raw")
            XCTAssertEqual(String(decoding: body, as: UTF8.self), "80")
        }
    }

    func testLocksHoldAcrossRegistriesAndRenewalsThroughOneKeepTheSessionEverywhere() async throws {
        let etcd = try await EtcdUnderTest(self)
        let a = try await registry(etcd, node: "node-a")
        let b = try await registry(etcd, node: "node-b")

        let created = try await a.put("/v1/session/create", #"{"Name":"leader","TTL":"10s","LockDelay":"0s"}"#)
        let session = try XCTUnwrap(try JSON.parse(created.body)["ID"]?.stringValue)
        let rival = try await b.put("/v1/session/create", #"{"Name":"rival","LockDelay":"0s"}"#)
        let other = try XCTUnwrap(try JSON.parse(rival.body)["ID"]?.stringValue)
        let acquired = try await a.put("/v1/kv/service/leader?acquire=\(session)", "a")
        XCTAssertEqual(String(decoding: acquired.body, as: UTF8.self), "true")
        let contended = try await b.put("/v1/kv/service/leader?acquire=\(other)", "b")
        XCTAssertEqual(String(decoding: contended.body, as: UTF8.self), "false", "a lock held through one registry is held for all")

        // Renewed only through B for longer than twice the TTL: A must not expire it.
        let renewUntil = Date().addingTimeInterval(23)
        while Date() < renewUntil {
            let renewed = try await b.put("/v1/session/renew/\(session)")
            XCTAssertEqual(renewed.status, 200)
            try await Task.sleep(for: .seconds(3))
        }
        let info = try await a.json("/v1/session/info/\(session)")
        XCTAssertEqual(info.arrayValue?.count, 1, "the session renewed through B is still alive on A")
        let held = try await a.json("/v1/kv/service/leader")
        XCTAssertEqual(held[0]?["Session"]?.stringValue, session)

        // Destroyed through B: the lock is free on A and the rival can take it.
        let destroyed = try await b.put("/v1/session/destroy/\(session)")
        XCTAssertEqual(destroyed.status, 200)
        let released = try await a.json("/v1/kv/service/leader")
        XCTAssertNil(released[0]?["Session"], "the destroyed session's lock is released")
        let taken = try await a.put("/v1/kv/service/leader?acquire=\(other)", "b")
        XCTAssertEqual(String(decoding: taken.body, as: UTF8.self), "true")
        let gone = try await a.json("/v1/session/info/\(session)")
        XCTAssertEqual(gone.arrayValue?.count, 0)
    }

    func testAcknowledgedWritesSurviveKillNineOfRegistryAndEtcd() async throws {
        let etcd = try await EtcdUnderTest(self)
        let a = try await registry(etcd, node: "node-a")
        let b = try await registry(etcd, node: "node-b")
        for i in 0..<20 {
            let registered = try await a.put("/v1/agent/service/register", #"{"Name":"api","ID":"api-\#(i)","Port":\#(9000 + i)}"#)
            XCTAssertEqual(registered.status, 200)
        }

        try await a.crashAndRestart()
        let afterRestart = try await a.json("/v1/catalog/service/api")
        XCTAssertEqual(afterRestart.arrayValue?.count, 20)

        // etcd itself dies: writes fail clearly and nothing is half-written; reads are still served.
        etcd.kill9()
        let refused = try await b.put("/v1/kv/while-down", "x")
        XCTAssertEqual(refused.status, 500)
        XCTAssertTrue(String(decoding: refused.body, as: UTF8.self).contains("write failed"))
        let whileDown = try await b.json("/v1/catalog/service/api")
        XCTAssertEqual(whileDown.arrayValue?.count, 20)

        // Back on its data: both registries follow again, and what was refused was never stored.
        try await etcd.start()
        try await eventually(timeout: 20, "a write through A succeeds after etcd restarts") {
            (try? await a.put("/v1/kv/after-restart", "y"))?.status == 200
        }
        try await eventually(timeout: 20, "B sees the write made through A after etcd restarted") {
            (try? await b.get("/v1/kv/after-restart"))?.status == 200
        }
        let refusedKey = try await b.get("/v1/kv/while-down")
        XCTAssertEqual(refusedKey.status, 404)
        let afterEtcdRestart = try await b.json("/v1/catalog/service/api")
        XCTAssertEqual(afterEtcdRestart.arrayValue?.count, 20)
    }

    func testBadStoreSettingsAndUnreachableEtcdAreClearErrors() async throws {
        func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
            try runToEnd(TrellisBinary.path, ["registry", "--http-addr", "127.0.0.1:0", "--log-level", "critical"] + arguments)
        }
        let unknown = try run(["--store", "zookeeper"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.output.contains("store must be sqlite or etcd"), unknown.output)
        let badEndpoint = try run(["--store", "etcd", "--etcd-endpoints", "not an address"])
        XCTAssertNotEqual(badEndpoint.status, 0)
        XCTAssertTrue(badEndpoint.output.contains("etcd endpoint must be http://HOST:PORT"), badEndpoint.output)
        let held = try HeldPort.hold(0, for: "nothing listens here")
        defer { held.release() }
        let unreachable = try run(["--store", "etcd", "--etcd-endpoints", "127.0.0.1:\(held.port)"])
        XCTAssertNotEqual(unreachable.status, 0)
        XCTAssertTrue(unreachable.output.contains("cannot read the catalog from etcd"), unreachable.output)
    }
}

extension EtcdStoreTests {
    /// Config entries, coordinates, a mixed transaction and the Raft view are shared by every registry on one etcd.
    func testConfigEntriesCoordinatesAndTransactionsAreSharedThroughEtcd() async throws {
        let etcd = try await EtcdUnderTest(self)
        let a = try await registry(etcd, node: "node-a")
        let b = try await registry(etcd, node: "node-b")
        let stored = try await a.put("/v1/config", #"{"Kind":"ingress-gateway","Name":"edge","Listeners":[]}"#)
        XCTAssertEqual(String(decoding: stored.body, as: UTF8.self), "true")
        // The other registry learns of the write from etcd's watch, a moment later.
        try await eventually("node-b sees the config entry") { try await b.get("/v1/config/ingress-gateway/edge").status == 200 }
        let seen = try await b.json("/v1/config/ingress-gateway/edge")
        XCTAssertEqual(seen["Name"], .string("edge"))

        let coordinate = #"{"Node":"node-a","Coord":{"Vec":[0.5,0,0,0,0,0,0,0],"Error":0.1,"Adjustment":0,"Height":0.0001}}"#
        _ = try await a.put("/v1/coordinate/update", coordinate)
        try await eventually("node-b sees the coordinate") {
            let (status, _, body) = try await b.get("/v1/coordinate/node/node-a")
            return status == 200 && (try? JSON.parse(body))?[0] != nil
        }
        let fromB = try await b.json("/v1/coordinate/node/node-a")
        XCTAssertEqual(fromB[0]?["Coord"]?["Vec"]?[0], .double(0.5))

        let txn = try await b.put("/v1/txn", """
            [{"Node":{"Verb":"set","Node":{"Node":"edge-1","Address":"10.0.0.7"}}},
             {"KV":{"Verb":"set","Key":"edge/config","Value":"dg=="}}]
            """)
        XCTAssertEqual(txn.status, 200, String(decoding: txn.body, as: UTF8.self))
        try await eventually("node-a sees the node") { try await a.get("/v1/catalog/node/edge-1").status == 200 }
        let node = try await a.json("/v1/catalog/node/edge-1")
        XCTAssertEqual(node["Node"]?["Address"], .string("10.0.0.7"))

        let raft = try await a.json("/v1/operator/raft/configuration")
        let servers = raft["Servers"]?.arrayValue ?? []
        XCTAssertEqual(servers.compactMap { $0["Node"]?.stringValue }, ["node-a", "node-b"])
        XCTAssertEqual(servers.filter { $0["Leader"] == .bool(true) }.count, 1, "one registry is reported as leader")
        XCTAssertEqual(raft["Store"]?["Kind"], .string("etcd"))
        XCTAssertEqual(raft["Store"]?["Members"]?.arrayValue?.map { $0["Name"] }, [.string("test")])
        XCTAssertEqual(raft["Store"]?["Members"]?[0]?["ClientURLs"], .strings([etcd.endpoint]))
    }
}
