import TrellisCore
import XCTest

final class HealthCheckTests: XCTestCase {
    private func status(_ registry: RegistryUnderTest, _ checkID: String) async throws -> String? {
        try await registry.json("/v1/agent/checks")[checkID]?["Status"]?.stringValue
    }

    func testHTTPCheckFollowsTheTargetsAnswers() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let target = try await ScriptedHTTPServer(self, status: 200)
        let (code, _, body) = try await registry.put("/v1/agent/service/register", """
            {"Name": "api", "ID": "api1", "Port": \(target.port),
             "Check": {"HTTP": "http://127.0.0.1:\(target.port)/health", "Interval": "1s", "Timeout": "500ms"}}
            """)
        XCTAssertEqual(code, 200, String(decoding: body, as: UTF8.self))
        try await eventually("HTTP 200 makes the check pass") { try await status(registry, "service:api1") == "passing" }
        let output = try await registry.json("/v1/agent/checks")["service:api1"]?["Output"]?.stringValue ?? ""
        XCTAssertTrue(output.contains("200 OK"), output)
        XCTAssertTrue(output.contains("status 200"), output)
        let v1 = try await registry.json("/v1/health/service/api?passing=1").arrayValue?.count
        XCTAssertEqual(v1, 1)

        try target.answer(429)
        try await eventually("HTTP 429 is a warning") { try await status(registry, "service:api1") == "warning" }
        try target.answer(503)
        try await eventually("HTTP 503 is critical") { try await status(registry, "service:api1") == "critical" }
        let v2 = try await registry.json("/v1/health/service/api?passing=true").arrayValue?.count
        XCTAssertEqual(v2, 0)
        try target.answer(200)
        try await eventually("recovers") { try await status(registry, "service:api1") == "passing" }
        target.stop()
        try await eventually("a dead target is critical") { try await status(registry, "service:api1") == "critical" }
    }

    func testHTTPChecksReuseKeepAliveConnections() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let target = try await ScriptedHTTPServer(self, status: 200, keepAlive: true)
        _ = try await registry.put("/v1/agent/service/register", """
            {"Name": "ka", "ID": "ka1", "Check": {"HTTP": "http://127.0.0.1:\(target.port)/", "Interval": "1s", "Status": "critical"}}
            """)
        try await eventually("passes") { try await status(registry, "service:ka1") == "passing" }
        try target.answer(503)
        try await eventually("follows the answers on the same connection") { try await status(registry, "service:ka1") == "critical" }
        try target.answer(200)
        try await eventually("and back") { try await status(registry, "service:ka1") == "passing" }
        XCTAssertEqual(target.connectionsAccepted, 1, "every probe went over one kept-alive connection")
    }

    func testTargetClosingIdleConnectionsDoesNotFailChecks() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let target = try await ScriptedHTTPServer(self, status: 200, keepAlive: true, idleTimeout: 0.3)
        _ = try await registry.put("/v1/agent/service/register", """
            {"Name": "idle", "ID": "i1", "Check": {"HTTP": "http://127.0.0.1:\(target.port)/", "Interval": "1s", "Status": "passing"}}
            """)
        try await eventually("probed at least four times") { target.connectionsAccepted >= 4 }
        let r1 = try await status(registry, "service:i1")
        XCTAssertEqual(r1, "passing")
        let output = try await registry.json("/v1/agent/checks")["service:i1"]?["Output"]?.stringValue ?? ""
        XCTAssertTrue(output.contains("200 OK"), output)
    }

    func testHTTPSCheckWithAndWithoutCertificateVerification() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let target = try await ScriptedHTTPServer(self, status: 200, tls: true)
        _ = try await registry.put("/v1/agent/service/register", """
            {"Name": "secure", "ID": "s1", "Checks": [
              {"CheckID": "insecure", "HTTP": "https://127.0.0.1:\(target.port)/", "Interval": "1s", "TLSSkipVerify": true},
              {"CheckID": "verified", "HTTP": "https://127.0.0.1:\(target.port)/", "Interval": "1s", "Status": "passing"}]}
            """)
        try await eventually("TLSSkipVerify accepts the self-signed certificate") {
            try await status(registry, "insecure") == "passing"
        }
        try await eventually("a verifying check refuses it") { try await status(registry, "verified") == "critical" }
        let checks = try await registry.json("/v1/agent/checks")
        XCTAssertTrue(checks["insecure"]?["Output"]?.stringValue?.contains("200 OK") ?? false)
        XCTAssertEqual(checks["insecure"]?["Definition"]?["TLSSkipVerify"], .bool(true))
    }

    func testTCPCheck() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let target = try await ScriptedHTTPServer(self)
        _ = try await registry.put("/v1/agent/service/register", """
            {"Name": "tcp", "ID": "t1", "Check": {"TCP": "127.0.0.1:\(target.port)", "Interval": "1s"}}
            """)
        try await eventually("TCP connect passes") { try await status(registry, "service:t1") == "passing" }
        target.stop()
        try await eventually("refused connect is critical") { try await status(registry, "service:t1") == "critical" }
        let output = try await registry.json("/v1/agent/checks")["service:t1"]?["Output"]?.stringValue ?? ""
        XCTAssertTrue(output.contains("connection refused"), output)
    }

    func testThresholdsDelayTransitions() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let target = try await ScriptedHTTPServer(self, status: 500)
        _ = try await registry.put("/v1/agent/service/register", """
            {"Name": "slow", "ID": "s1", "Check": {"HTTP": "http://127.0.0.1:\(target.port)/", "Interval": "1s",
             "SuccessBeforePassing": 3, "Status": "critical"}}
            """)
        try await Task.sleep(for: .seconds(1))
        try target.answer(200)
        try await Task.sleep(for: .milliseconds(1500))
        let v3 = try await status(registry, "service:s1")
        XCTAssertEqual(v3, "critical", "one or two successes are not enough")
        try await eventually("three successes pass") { try await status(registry, "service:s1") == "passing" }
    }

    func testTTLRefreshesKeepTheCheckAliveUntilTheyStop() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"beat","ID":"b1","Check":{"TTL":"1s"}}"#)
        for _ in 0..<8 {
            _ = try await registry.put("/v1/agent/check/pass/service:b1")
            try await Task.sleep(for: .milliseconds(400))
            let current = try await status(registry, "service:b1")
            XCTAssertEqual(current, "passing", "each refresh moves the TTL deadline")
        }
        try await eventually("lapses once refreshes stop") { try await status(registry, "service:b1") == "critical" }
    }

    func testTTLExpiresAndCriticalServiceIsDeregistered() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/agent/service/register", """
            {"Name": "batch", "ID": "b1", "Check": {"TTL": "1s", "Status": "passing", "DeregisterCriticalServiceAfter": "2s"}}
            """)
        let v4 = try await status(registry, "service:b1")
        XCTAssertEqual(v4, "passing")
        try await eventually("TTL lapses") { try await status(registry, "service:b1") == "critical" }
        let v5 = try await registry.json("/v1/agent/checks")["service:b1"]?["Output"]
        XCTAssertEqual(v5, .string("TTL expired"))
        try await eventually(timeout: 10, "service removed after staying critical") {
            try await registry.json("/v1/catalog/service/batch").arrayValue?.isEmpty == true
        }
    }
}
