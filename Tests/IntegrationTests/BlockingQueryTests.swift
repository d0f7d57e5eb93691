import Foundation
import TrellisCore
import XCTest

final class BlockingQueryTests: XCTestCase {
    func testBlockedReadWakesOnChangeOfItsServiceOnly() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"web","ID":"w1","Check":{"TTL":"60s"}}"#)
        let (_, headers, _) = try await registry.get("/v1/health/service/web")
        let index = try XCTUnwrap(headers["x-consul-index"].flatMap(UInt64.init))
        XCTAssertGreaterThan(index, 0)
        XCTAssertEqual(headers["x-consul-knownleader"], "true")
        XCTAssertNotNil(headers["x-consul-lastcontact"])

        let started = Date()
        async let blocked = registry.get("/v1/health/service/web?index=\(index)&wait=20s")
        try await Task.sleep(for: .milliseconds(300))
        // A change elsewhere must not answer the watcher of "web".
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"other"}"#)
        try await Task.sleep(for: .milliseconds(300))
        _ = try await registry.put("/v1/agent/check/pass/service:w1")
        let (status, wokenHeaders, body) = try await blocked
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertEqual(status, 200)
        XCTAssertGreaterThan(elapsed, 0.55, "it waited past the unrelated change")
        XCTAssertLessThan(elapsed, 5, "it woke on the change, not on the timeout")
        let newIndex = try XCTUnwrap(wokenHeaders["x-consul-index"].flatMap(UInt64.init))
        XCTAssertGreaterThan(newIndex, index)
        XCTAssertEqual(try JSON.parse(body)[0]?["Checks"]?[1]?["Status"], .string("passing"))
    }

    func testWaitRunsOutWithSameIndexWhenNothingChanged() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let (_, headers, _) = try await registry.get("/v1/catalog/services")
        let index = headers["x-consul-index"]!
        let started = Date()
        let (status, after, _) = try await registry.get("/v1/catalog/services?index=\(index)&wait=1000ms")
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertEqual(status, 200)
        XCTAssertEqual(after["x-consul-index"], index, "same index means no change")
        XCTAssertGreaterThanOrEqual(elapsed, 0.95)
        XCTAssertLessThan(elapsed, 1.5, "jitter is at most wait/16")
    }

    func testIndexAheadOfTheRegistryAnswersAtOnce() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let started = Date()
        let (status, headers, _) = try await registry.get("/v1/catalog/services?index=999999&wait=10s")
        XCTAssertEqual(status, 200)
        XCTAssertLessThan(Date().timeIntervalSince(started), 2)
        XCTAssertLessThan(UInt64(headers["x-consul-index"]!)!, 999_999, "the client sees the index go backwards and resets")
    }

    func testManyWatchersAllWakeOnOneChange() async throws {
        // 200 watchers and the writer all connect from 127.0.0.1: lift the per-client cap of 200.
        let registry = RegistryUnderTest(dataDir: try temporaryDirectory(self), arguments: ["--http-max-conns-per-client", "0"])
        try await registry.start()
        addTeardownBlock { registry.child?.kill9() }
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"fan","ID":"f1","Check":{"TTL":"60s"}}"#)
        let index = try await registry.get("/v1/health/service/fan").headers["x-consul-index"]!
        let watchers = 200
        let woke = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<watchers {
                group.addTask {
                    let (_, headers, _) = try await registry.client.send("GET", "/v1/health/service/fan?index=\(index)&wait=30s", timeout: 60)
                    return headers["x-consul-index"] != index
                }
            }
            try await Task.sleep(for: .seconds(1))
            _ = try await registry.put("/v1/agent/check/pass/service:f1")
            var count = 0
            for try await changed in group where changed { count += 1 }
            return count
        }
        XCTAssertEqual(woke, watchers)
    }

    func testHashBasedBlockingOnAgentService() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"api","ID":"api1","Tags":["v1"]}"#)
        let (_, headers, _) = try await registry.get("/v1/agent/service/api1")
        let hash = try XCTUnwrap(headers["x-consul-contenthash"])
        let started = Date()
        async let blocked = registry.get("/v1/agent/service/api1?hash=\(hash)&wait=20s")
        try await Task.sleep(for: .milliseconds(300))
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"other","ID":"o1"}"#)
        try await Task.sleep(for: .milliseconds(300))
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"api","ID":"api1","Tags":["v2"]}"#)
        let (status, after, body) = try await blocked
        XCTAssertEqual(status, 200)
        XCTAssertGreaterThan(Date().timeIntervalSince(started), 0.55, "another service's change does not answer it")
        XCTAssertNotEqual(after["x-consul-contenthash"], hash)
        XCTAssertEqual(try JSON.parse(body)["Tags"], .strings(["v2"]))
    }
}
