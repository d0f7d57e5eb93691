@testable import Registry
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import TrellisCore
import TrellisHTTP
import XCTest

final class WatchHubTests: XCTestCase {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)

    override func tearDown() { try? group.syncShutdownGracefully() }

    /// Waits until every loop has run what was queued so far.
    private func drain() throws {
        for loop in group.makeIterator() { try loop.submit {}.wait() }
    }

    func testWakesOnlyWaitersOfTheChangedKey() throws {
        let hub = WatchHub()
        let woken = Mutex<[String]>([])
        _ = hub.wait(on: "svc:a", loop: group.next()) { woken.withLock { $0.append("a") } }
        _ = hub.wait(on: "svc:b", loop: group.next()) { woken.withLock { $0.append("b") } }
        hub.notify(["svc:a"])
        try drain()
        XCTAssertEqual(woken.withLock { $0 }, ["a"])
        XCTAssertEqual(hub.waitingCount, 1)
        hub.notify(["svc:a"])
        try drain()
        XCTAssertEqual(woken.withLock { $0 }, ["a"], "a waiter fires once")
    }

    func testCancelledWaiterIsNeverWoken() throws {
        let hub = WatchHub()
        let fired = Mutex(false)
        let token = hub.wait(on: "k", loop: group.next()) { fired.withLock { $0 = true } }
        hub.cancel(token)
        hub.notify(["k"])
        try drain()
        XCTAssertFalse(fired.withLock { $0 })
        XCTAssertEqual(hub.waitingCount, 0)
    }

    func testTenThousandWaitersWakeTogetherOnTheirOwnLoops() throws {
        let hub = WatchHub()
        let count = Mutex(0)
        let wrongLoop = Mutex(0)
        for _ in 0..<10_000 {
            let loop = group.next()
            _ = hub.wait(on: "svc:web", loop: loop) {
                count.withLock { $0 += 1 }
                if !loop.inEventLoop { wrongLoop.withLock { $0 += 1 } }
            }
        }
        hub.notify(["svc:web"])
        try drain()
        XCTAssertEqual(count.withLock { $0 }, 10_000)
        XCTAssertEqual(wrongLoop.withLock { $0 }, 0)
    }
}

final class BlockingParametersTests: XCTestCase {
    func testWaitFormsAndCaps() throws {
        let p = try BlockingParameters(QueryParameters("index=5&wait=120000ms"))
        XCTAssertEqual(p.minIndex, 5)
        XCTAssertGreaterThanOrEqual(p.wait, .seconds(120))
        XCTAssertLessThanOrEqual(p.wait, .milliseconds(127_500))
        let capped = try BlockingParameters(QueryParameters("index=1&wait=1h"))
        XCTAssertLessThanOrEqual(capped.wait, .minutes(10) + .milliseconds(37_500))
        XCTAssertThrowsError(try BlockingParameters(QueryParameters("index=abc")))
        XCTAssertThrowsError(try BlockingParameters(QueryParameters("index=1&wait=forever")))
    }

    func testValuelessFlagsAreSet() {
        let q = QueryParameters("stale&passing=&recurse=1&keys=True&x=true&off=false&bad=maybe")
        XCTAssertEqual(q.flag("stale"), true)
        XCTAssertEqual(q.flag("passing"), true)
        XCTAssertEqual(q.flag("recurse"), true)
        XCTAssertEqual(q.flag("keys"), true)
        XCTAssertEqual(q.flag("x"), true)
        XCTAssertEqual(q.flag("off"), false)
        XCTAssertEqual(q.flag("missing"), false)
        XCTAssertNil(q.flag("bad"))
    }

    func testQueryDecodingKeepsRepeatsAndDecodesPercentAndPlus() {
        let q = QueryParameters("tag=a&tag=b%2Fc&filter=Service+%3D%3D+web")
        XCTAssertEqual(q.all("tag"), ["a", "b/c"])
        XCTAssertEqual(q["filter"], "Service == web")
    }
}

final class FilterExpressionTests: XCTestCase {
    private let item = JSON.object(JSONObject([
        ("Service", .string("web")), ("Port", .int(80)), ("Tags", .strings(["v1", "canary"])),
        ("Meta", .stringMap(["env": "prod"])), ("Address", .string("")),
    ]))

    func testOperators() throws {
        let cases: [(String, Bool)] = [
            (#"Service == "web""#, true), (#"Service != web"#, false), ("Port == 80", true),
            (#""canary" in Tags"#, true), (#""v2" not in Tags"#, true), (#"Tags contains "v1""#, true),
            (#"Meta.env == "prod" and Port == 80"#, true), (#"Meta.env == dev or Service == web"#, true),
            ("not (Port == 80)", false), ("Address is empty", true), ("Meta is not empty", true),
            ("Meta.missing is empty", true),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(try FilterExpression(text).matches(item), expected, text)
        }
    }

    func testSyntaxErrorsAreReported() {
        for bad in ["Service ==", "Service === web", "(Port == 80", "Port >< 3", #""x" in"#] {
            XCTAssertThrowsError(try FilterExpression(bad), bad)
        }
    }
}

final class SQLiteStoreTests: XCTestCase {
    func testAcknowledgedWritesAreReadBackAfterReopen() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("trellis-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("registry.db").path
        do {
            let store = try SQLiteStore(path: path)
            let catalog = try await Catalog(store: store)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<200 {
                    group.addTask {
                        try await catalog.write { (s: inout RegistryState) throws(CatalogError) in
                            var svc = ServiceInstance(node: "n1", id: "svc-\(i)", name: "svc")
                            svc.port = 1000 + i
                            s.putInstance(svc)
                        }
                    }
                }
                try await group.waitForAll()
            }
            store.close()
        }
        let reopened = try await Catalog(store: SQLiteStore(path: path))
        XCTAssertEqual(reopened.read { $0.instances(named: "svc").count }, 200)
        XCTAssertEqual(reopened.read { $0.index }, 200)
    }
}
