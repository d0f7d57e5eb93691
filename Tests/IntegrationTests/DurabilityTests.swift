import Foundation
import Synchronization
import TrellisCore
import XCTest

final class DurabilityTests: XCTestCase {
    func testEveryAcknowledgedRegistrationSurvivesKillNine() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let acknowledged = Acknowledged()
        let client = registry.client
        // Writers keep registering until the process dies under them (no task cancellation: the
        // first refused request ends each writer).
        let writers = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<16 {
                    group.addTask {
                        var i = 0
                        while true {
                            let id = "w\(worker)-\(i)"
                            let body = #"{"Name":"load","ID":"\#(id)","Port":\#(1000 + i % 50000)}"#
                            guard let (status, _, _) = try? await client.send("PUT", "/v1/agent/service/register",
                                                                              body: Array(body.utf8), timeout: 5) else { return }
                            if status == 200 { acknowledged.ids.withLock { _ = $0.insert(id) } }
                            i += 1
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        try await Task.sleep(for: .milliseconds(1500))
        registry.child?.kill9()
        _ = try? await writers.value
        let acked = acknowledged.ids.withLock { $0 }
        XCTAssertGreaterThan(acked.count, 50, "the load actually ran")

        try await registry.crashAndRestart()
        let stored = try await registry.json("/v1/catalog/service/load").arrayValue!
        let ids = Set(stored.compactMap { $0["ServiceID"]?.stringValue })
        let lost = acked.subtracting(ids)
        XCTAssertTrue(lost.isEmpty, "\(lost.count) acknowledged registrations lost, e.g. \(lost.prefix(5))")
    }

    func testCatalogCheckStateAndIndexComeBackAndChecksKeepRunning() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let target = try await ScriptedHTTPServer(self, status: 200)
        _ = try await registry.put("/v1/agent/service/register", """
            {"Name": "api", "ID": "api1", "Check": {"HTTP": "http://127.0.0.1:\(target.port)/", "Interval": "1s"}}
            """)
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"cron","ID":"c1","Check":{"TTL":"1h","Status":"warning"}}"#)
        try await eventually("check passes") {
            try await registry.json("/v1/agent/checks")["service:api1"]?["Status"] == .string("passing")
        }
        let before = try await registry.get("/v1/catalog/services").headers["x-consul-index"]!
        try await registry.crashAndRestart()
        let after = try await registry.get("/v1/catalog/services").headers["x-consul-index"]!
        XCTAssertGreaterThanOrEqual(UInt64(after)!, UInt64(before)!, "the index does not go backwards over a restart")
        let checks = try await registry.json("/v1/agent/checks")
        XCTAssertEqual(checks["service:c1"]?["Status"], .string("warning"))
        XCTAssertEqual(checks["service:api1"]?["Status"], .string("passing"))
        try target.answer(500)
        try await eventually("the HTTP check runs again after the restart") {
            try await registry.json("/v1/agent/checks")["service:api1"]?["Status"] == .string("critical")
        }
    }
}

/// IDs the registry acknowledged, shared by concurrent writers.
final class Acknowledged: Sendable {
    let ids = Mutex<Set<String>>([])
}
