import Foundation
import TrellisCore
import XCTest

final class KVCLITests: XCTestCase {
    private func trellis(_ arguments: [String], _ registry: RegistryUnderTest) async throws -> (code: Int32, output: String) {
        let child = try ChildProcess(TrellisBinary.path, arguments, environment: ["TRELLIS_ADDR": registry.address])
        child.process.waitUntilExit()
        try await Task.sleep(for: .milliseconds(50))
        return (child.process.terminationStatus, child.output.joined(separator: "\n"))
    }

    func testKVCommandsLikeConsuls() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let put = try await trellis(["kv", "put", "app/name", "shop"], registry)
        XCTAssertEqual(put.code, 0)
        XCTAssertEqual(put.output, "Success! Data written to: app/name")
        _ = try await trellis(["kv", "put", "-flags=3", "app/db/url", "pg://db"], registry)
        let get = try await trellis(["kv", "get", "app/name"], registry)
        XCTAssertEqual(get.output, "shop")
        let tree = try await trellis(["kv", "get", "-recurse", "app"], registry)
        XCTAssertEqual(tree.output, "app/db/url:pg://db\napp/name:shop")
        let keys = try await trellis(["kv", "get", "-keys", "app/"], registry)
        XCTAssertEqual(keys.output, "app/db/\napp/name")
        let missing = try await trellis(["kv", "get", "app/none"], registry)
        XCTAssertEqual(missing.code, 1)

        let casFail = try await trellis(["kv", "put", "-cas", "-modify-index=1", "app/name", "other"], registry)
        XCTAssertEqual(casFail.code, 1)
        let index = try await registry.json("/v1/kv/app/name")[0]!["ModifyIndex"]!.intValue!
        let casOK = try await trellis(["kv", "put", "-cas", "-modify-index=\(index)", "app/name", "other"], registry)
        XCTAssertEqual(casOK.code, 0)

        let exported = try await trellis(["kv", "export", "app"], registry)
        let items = try JSON.parse(exported.output).arrayValue ?? []
        XCTAssertEqual(items.count, 2)
        XCTAssertEqual(items.first?["flags"], .int(3))
        let dir = try temporaryDirectory(self)
        try exported.output.write(toFile: dir + "/export.json", atomically: true, encoding: .utf8)
        let r1 = try await trellis(["kv", "delete", "-recurse", "app"], registry).code
        XCTAssertEqual(r1, 0)
        let r2 = try await trellis(["kv", "get", "-recurse", "app"], registry).output
        XCTAssertEqual(r2, "")
        let r3 = try await trellis(["kv", "import", dir + "/export.json"], registry).code
        XCTAssertEqual(r3, 0)
        let r4 = try await trellis(["kv", "get", "app/name"], registry).output
        XCTAssertEqual(r4, "other")
        let again = try await registry.json("/v1/kv/app/db/url")[0]
        XCTAssertEqual(again?["Flags"], .int(3))
    }

    func testWatchPrintsChangesUnderItsPrefix() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/kv/cfg/a", "1")
        let watch = try ChildProcess(TrellisBinary.path, ["kv", "watch", "cfg/"], environment: ["TRELLIS_ADDR": registry.address])
        addTeardownBlock { watch.kill9() }
        _ = try await watch.waitForLine(containing: "watching cfg/")
        _ = try await registry.put("/v1/kv/elsewhere", "x")
        _ = try await registry.put("/v1/kv/cfg/b", "2")
        _ = try await watch.waitForLine(containing: "PUT cfg/b = 2")
        _ = try await registry.client.send("DELETE", "/v1/kv/cfg/a")
        _ = try await watch.waitForLine(containing: "DELETE cfg/a")
        XCTAssertFalse(watch.output.contains { $0.contains("elsewhere") })
    }

    func testLockRunsCommandsOneAtATime() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let env = ["TRELLIS_ADDR": registry.address]
        let first = try ChildProcess(TrellisBinary.path, ["lock", "jobs/nightly", "--", "sh", "-c", "echo first-start; sleep 2; echo first-end"],
                                     environment: env)
        addTeardownBlock { first.kill9() }
        _ = try await first.waitForLine(containing: "first-start")
        let holder = try await registry.json("/v1/kv/jobs/nightly/.lock")[0]
        XCTAssertNotNil(holder?["Session"]?.stringValue, "the lock key is held by a session while the command runs")
        let second = try ChildProcess(TrellisBinary.path, ["lock", "jobs/nightly", "--", "sh", "-c", "echo second-start; exit 7"],
                                      environment: env)
        addTeardownBlock { second.kill9() }
        _ = try await second.waitForLine(containing: "second-start")
        XCTAssertTrue(first.output.contains("first-end"), "the second command started only after the first ended")
        second.process.waitUntilExit()
        XCTAssertEqual(second.process.terminationStatus, 7, "lock exits with the command's status")
        let sessions = try await registry.json("/v1/session/list")
        XCTAssertEqual(sessions, .array([]), "sessions are destroyed when the commands end")
    }
}
