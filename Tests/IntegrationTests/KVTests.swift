import Foundation
import Synchronization
import TrellisCore
import XCTest

final class KVTests: XCTestCase {
    private func value(_ registry: RegistryUnderTest, _ key: String) async throws -> String? {
        let (status, _, body) = try await registry.get("/v1/kv/\(key)?raw")
        return status == 200 ? String(decoding: body, as: UTF8.self) : nil
    }

    func testGetPutDeleteWithConsulShapes() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let (putStatus, _, putBody) = try await registry.put("/v1/kv/app/config?flags=42", "hello")
        XCTAssertEqual(putStatus, 200)
        XCTAssertEqual(String(decoding: putBody, as: UTF8.self), "true")
        let (status, headers, body) = try await registry.get("/v1/kv/app/config")
        XCTAssertEqual(status, 200)
        let entry = try XCTUnwrap(JSON.parse(body)[0])
        XCTAssertEqual(entry["Key"], .string("app/config"))
        XCTAssertEqual(entry["Value"], .string("aGVsbG8="))
        XCTAssertEqual(entry["Flags"], .int(42))
        XCTAssertEqual(entry["LockIndex"], .int(0))
        XCTAssertNil(entry["Session"])
        XCTAssertEqual(headers["x-consul-index"], entry["ModifyIndex"]?.intValue.map { String($0) })
        let raw = try await value(registry, "app/config")
        XCTAssertEqual(raw, "hello")

        _ = try await registry.put("/v1/kv/app/db/url", "pg://")
        _ = try await registry.put("/v1/kv/apple", "fruit")
        let keys = try await registry.json("/v1/kv/app/?keys&separator=/")
        XCTAssertEqual(keys, .strings(["app/config", "app/db/"]))
        let tree = try await registry.json("/v1/kv/app?recurse=1")
        XCTAssertEqual(tree.arrayValue?.compactMap { $0["Key"]?.stringValue }, ["app/config", "app/db/url", "apple"])

        let (missing, missingHeaders, _) = try await registry.get("/v1/kv/nothing/here")
        XCTAssertEqual(missing, 404)
        XCTAssertNotNil(missingHeaders["x-consul-index"], "404s carry the index too")

        let kv1 = try await registry.client.send("DELETE", "/v1/kv/app?recurse").status
        XCTAssertEqual(kv1, 200)
        let gone = try await registry.get("/v1/kv/app/config")
        XCTAssertEqual(gone.status, 404)
        let kept = try await value(registry, "apple")
        XCTAssertEqual(kept, nil, "recurse on 'app' also removes 'apple', as in Consul")
    }

    func testValuesOverTheLimitAreRefused() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let big = String(repeating: "x", count: 512 * 1024 + 1)
        let tooBig = try await registry.put("/v1/kv/big", big)
        XCTAssertEqual(tooBig.status, 413)
        let exact = try await registry.put("/v1/kv/big", String(repeating: "x", count: 512 * 1024))
        XCTAssertEqual(exact.status, 200)
        let badFlags = try await registry.put("/v1/kv/k?flags=-1", "v")
        XCTAssertEqual(badFlags.status, 400)
    }

    func testCASRaceHasExactlyOneWinner() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/kv/counter", "0")
        let index = try await registry.json("/v1/kv/counter")[0]!["ModifyIndex"]!.intValue!
        let client = registry.client
        let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
            for writer in 0..<20 {
                group.addTask {
                    let (_, _, body) = try await client.send("PUT", "/v1/kv/counter?cas=\(index)", body: Array("w\(writer)".utf8))
                    return String(decoding: body, as: UTF8.self) == "true"
                }
            }
            var count = 0
            for try await won in group where won { count += 1 }
            return count
        }
        XCTAssertEqual(wins, 1)
        let createOnly = try await registry.put("/v1/kv/counter?cas=0", "again")
        XCTAssertEqual(String(decoding: createOnly.body, as: UTF8.self), "false")
    }

    func testLockHandOverWhenHoldersSessionExpires() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let first = try await registry.client.json("PUT", "/v1/session/create",
                                                   body: Array(#"{"Name":"a","TTL":"10s","LockDelay":"0s"}"#.utf8)).0["ID"]!.stringValue!
        let second = try await registry.client.json("PUT", "/v1/session/create",
                                                    body: Array(#"{"Name":"b","TTL":"60s"}"#.utf8)).0["ID"]!.stringValue!
        let acquired = try await registry.put("/v1/kv/service/leader?acquire=\(first)", "a")
        XCTAssertEqual(String(decoding: acquired.body, as: UTF8.self), "true")
        let contested = try await registry.put("/v1/kv/service/leader?acquire=\(second)", "b")
        XCTAssertEqual(String(decoding: contested.body, as: UTF8.self), "false")
        let held = try await registry.json("/v1/kv/service/leader")[0]!
        XCTAssertEqual(held["Session"], .string(first))
        XCTAssertEqual(held["LockIndex"], .int(1))

        // The holder stops renewing: after 2×TTL the lock is released and the other session takes it.
        let started = Date()
        try await eventually(timeout: 30, "the lock is released when the session expires") {
            try await registry.json("/v1/kv/service/leader")[0]?["Session"] == nil
        }
        XCTAssertGreaterThan(Date().timeIntervalSince(started), 5, "not before the TTL grace")
        let takeover = try await registry.put("/v1/kv/service/leader?acquire=\(second)", "b")
        XCTAssertEqual(String(decoding: takeover.body, as: UTF8.self), "true")
        let kv2 = try await registry.json("/v1/kv/service/leader")[0]?["LockIndex"]
        XCTAssertEqual(kv2, .int(2))
        let info = try await registry.json("/v1/session/info/\(first)")
        XCTAssertEqual(info, .array([]))
    }

    func testDestroyedSessionKeepsLockDelayAndDeleteBehaviour() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let releaser = try await registry.client.json("PUT", "/v1/session/create", body: Array(#"{"LockDelay":"3s"}"#.utf8)).0["ID"]!.stringValue!
        let deleter = try await registry.client.json("PUT", "/v1/session/create", body: Array(#"{"Behavior":"delete"}"#.utf8)).0["ID"]!.stringValue!
        let other = try await registry.client.json("PUT", "/v1/session/create", body: nil).0["ID"]!.stringValue!
        _ = try await registry.put("/v1/kv/l1?acquire=\(releaser)", "x")
        _ = try await registry.put("/v1/kv/l2?acquire=\(deleter)", "y")
        _ = try await registry.put("/v1/session/destroy/\(releaser)")
        _ = try await registry.put("/v1/session/destroy/\(deleter)")
        let delayed = try await registry.put("/v1/kv/l1?acquire=\(other)", "z")
        XCTAssertEqual(String(decoding: delayed.body, as: UTF8.self), "false", "lock-delay blocks re-acquisition")
        let deleted = try await registry.get("/v1/kv/l2")
        XCTAssertEqual(deleted.status, 404, "Behavior delete removes the held key")
        try await eventually(timeout: 10, "lock-delay ends") {
            String(decoding: try await registry.put("/v1/kv/l1?acquire=\(other)", "z").body, as: UTF8.self) == "true"
        }
    }

    func testSessionInvalidatedWhenLinkedCheckGoesCritical() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/agent/check/register", #"{"Name":"alive","TTL":"60s","Status":"passing"}"#)
        let session = try await registry.client.json("PUT", "/v1/session/create",
                                                     body: Array(#"{"NodeChecks":["serfHealth"],"Checks":["alive"]}"#.utf8)).0["ID"]!.stringValue!
        _ = try await registry.put("/v1/kv/job?acquire=\(session)", "mine")
        _ = try await registry.put("/v1/agent/check/fail/alive")
        let entry = try await registry.json("/v1/kv/job")[0]
        XCTAssertNil(entry?["Session"])
        let kv3 = try await registry.json("/v1/session/list")
        XCTAssertEqual(kv3, .array([]))
        let refused = try await registry.client.send("PUT", "/v1/session/create", body: Array(#"{"Checks":["alive"]}"#.utf8))
        XCTAssertEqual(refused.status, 400, "a session cannot link a critical check")
    }

    func testTransactionIsAllOrNothing() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/kv/existing", "1")
        let failing = """
            [{"KV":{"Verb":"set","Key":"t/a","Value":"YQ=="}},
             {"KV":{"Verb":"delete","Key":"existing"}},
             {"KV":{"Verb":"check-index","Key":"t/a","Index":999}}]
            """
        let (status, _, body) = try await registry.put("/v1/txn", failing)
        XCTAssertEqual(status, 409)
        let errors = try JSON.parse(body)
        XCTAssertEqual(errors["Results"], .null)
        XCTAssertEqual(errors["Errors"]?[0]?["OpIndex"], .int(2))
        let untouchedA = try await registry.get("/v1/kv/t/a")
        XCTAssertEqual(untouchedA.status, 404, "no partial application")
        let stillThere = try await value(registry, "existing")
        XCTAssertEqual(stillThere, "1")

        let index = try await registry.json("/v1/kv/existing")[0]!["ModifyIndex"]!.intValue!
        let succeeding = """
            [{"KV":{"Verb":"cas","Key":"existing","Value":"Mg==","Index":\(index)}},
             {"KV":{"Verb":"set","Key":"t/b","Value":"Yg==","Flags":7}},
             {"KV":{"Verb":"get","Key":"existing"}}]
            """
        let (ok, _, okBody) = try await registry.put("/v1/txn", succeeding)
        XCTAssertEqual(ok, 200, String(decoding: okBody, as: UTF8.self))
        let results = try JSON.parse(okBody)
        XCTAssertEqual(results["Errors"], .null)
        XCTAssertEqual(results["Results"]?[2]?["KV"]?["Value"], .string("Mg=="))
        XCTAssertEqual(results["Results"]?[1]?["KV"]?["Value"], .null, "write results carry no value")
        let tooMany = "[" + Array(repeating: #"{"KV":{"Verb":"get","Key":"x"}}"#, count: 65).joined(separator: ",") + "]"
        let kv4 = try await registry.put("/v1/txn", tooMany).status
        XCTAssertEqual(kv4, 413)
        let kv5 = try await registry.put("/v1/txn", #"[{"KV":{"Verb":"explode","Key":"x"}}]"#).status
        XCTAssertEqual(kv5, 400)
    }

    func testWatchWakesOnChangeUnderItsPrefixOnly() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/kv/config/app/a", "1")
        let index = try await registry.get("/v1/kv/config/app?recurse").headers["x-consul-index"]!
        let started = Date()
        async let watched = registry.client.send("GET", "/v1/kv/config/app?recurse&index=\(index)&wait=20s", timeout: 40)
        try await Task.sleep(for: .milliseconds(300))
        _ = try await registry.put("/v1/kv/config/other/x", "elsewhere")
        try await Task.sleep(for: .milliseconds(500))
        _ = try await registry.put("/v1/kv/config/app/b", "2")
        let (status, headers, body) = try await watched
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertEqual(status, 200)
        XCTAssertGreaterThan(elapsed, 0.75, "the change elsewhere did not answer it")
        XCTAssertLessThan(elapsed, 5)
        XCTAssertNotEqual(headers["x-consul-index"], index)
        XCTAssertEqual(try JSON.parse(body).arrayValue?.count, 2)
    }

    func testEveryAcknowledgedKVWriteSurvivesKillNine() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let acknowledged = Acknowledged()
        let client = registry.client
        let writers = Task {
            await withTaskGroup(of: Void.self) { group in
                for worker in 0..<16 {
                    group.addTask {
                        var i = 0
                        while true {
                            let key = "stream/w\(worker)/\(i)"
                            guard let (status, _, body) = try? await client.send("PUT", "/v1/kv/\(key)", body: Array("v\(i)".utf8), timeout: 5)
                            else { return }
                            if status == 200 && body == Array("true".utf8) { acknowledged.ids.withLock { _ = $0.insert(key) } }
                            i += 1
                        }
                    }
                }
            }
        }
        try await Task.sleep(for: .milliseconds(1500))
        registry.child?.kill9()
        await writers.value
        let acked = acknowledged.ids.withLock { $0 }
        XCTAssertGreaterThan(acked.count, 50)
        try await registry.crashAndRestart()
        let stored = Set(try await registry.json("/v1/kv/stream/?keys").arrayValue!.compactMap(\.stringValue))
        let lost = acked.subtracting(stored)
        XCTAssertTrue(lost.isEmpty, "\(lost.count) acknowledged writes lost")
    }
}
