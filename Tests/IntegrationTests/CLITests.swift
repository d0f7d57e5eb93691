import ConsulClient
import Foundation
import TrellisCore
import TrellisHTTP
import XCTest

final class CLITests: XCTestCase {
    private func trellis(_ arguments: [String], environment: [String: String]) async throws -> (code: Int32, output: String) {
        let child = try ChildProcess(TrellisBinary.path, arguments, environment: environment)
        child.process.waitUntilExit()
        try await Task.sleep(for: .milliseconds(50))
        return (child.process.terminationStatus, child.output.joined(separator: "\n"))
    }

    func testRegisterServicesHealthDeregisterThroughTheCLI() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let env = ["TRELLIS_ADDR": registry.address]
        let dir = try temporaryDirectory(self)
        try """
            service:
              name: payments
              id: payments-1
              port: 9100
              tags: [v2]
              check:
                ttl: 30s
                status: passing
            """.write(toFile: dir + "/payments.yaml", atomically: true, encoding: .utf8)
        let registered = try await trellis(["register", dir + "/payments.yaml"], environment: env)
        XCTAssertEqual(registered.code, 0, registered.output)
        let services = try await trellis(["services"], environment: env)
        XCTAssertEqual(services.code, 0)
        XCTAssertTrue(services.output.contains("payments"), services.output)
        XCTAssertTrue(services.output.contains("v2"), services.output)
        let health = try await trellis(["health", "payments"], environment: ["CONSUL_HTTP_ADDR": "http://" + registry.address])
        XCTAssertEqual(health.code, 0)
        XCTAssertTrue(health.output.contains("payments-1"), health.output)
        XCTAssertTrue(health.output.contains("passing"), health.output)
        let v1 = try await trellis(["deregister", "payments-1"], environment: env).code
        XCTAssertEqual(v1, 0)
        let v2 = try await trellis(["health", "payments"], environment: env).code
        XCTAssertEqual(v2, 1)
    }

    func testCLIReportsBadFilesAndUnreachableRegistry() async throws {
        let dir = try temporaryDirectory(self)
        try "service: [unclosed".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        let bad = try await trellis(["register", dir + "/bad.yaml"], environment: ["TRELLIS_ADDR": "127.0.0.1:1"])
        XCTAssertNotEqual(bad.code, 0)
        let missing = try await trellis(["register", dir + "/none.json"], environment: [:])
        XCTAssertNotEqual(missing.code, 0)
        let down = try runToEnd(TrellisBinary.path, ["services", "--registry", "127.0.0.1:1"])
        XCTAssertEqual(down.status, 1)
        XCTAssertEqual(down.output, "error: cannot reach the registry: GET http://127.0.0.1:1/v1/catalog/services: connection refused\n")
        let tls = try runToEnd(TrellisBinary.path, ["services", "--registry", "https://127.0.0.1:8501"])
        XCTAssertEqual(tls.status, 1)
        XCTAssertEqual(tls.output, "error: cannot reach the registry: https://127.0.0.1:8501 is not an http://host:port address\n")
        let inbound = try runToEnd(TrellisBinary.path, ["sidecar", "--service", "orders", "--port", "0", "--local-port", "1", "--upstream", "inbound:9100"])
        XCTAssertNotEqual(inbound.status, 0)
        XCTAssertTrue(inbound.output.contains(#"--upstream: "inbound" names the sidecar's inbound listener"#), inbound.output)
    }
}

final class RegistryConfigFileTests: XCTestCase {
    func testConfigFileSettingsAndUnknownKeys() async throws {
        let dir = try temporaryDirectory(self)
        try "http_addr: 127.0.0.1:0\ndata_dir: \(dir)/data\nnode: from-file\ndatacenter: east\n"
            .write(toFile: dir + "/registry.yaml", atomically: true, encoding: .utf8)
        let child = try ChildProcess(TrellisBinary.path, ["registry", "--config", dir + "/registry.yaml", "--log-level", "error"])
        addTeardownBlock { child.kill9() }
        let line = try await child.waitForLine(containing: "listening on http://")
        let address = String(line.split(separator: " ").first { $0.hasPrefix("http://") }!.dropFirst(7))
        let me = try await ConsulClient(address: address).json("GET", "/v1/agent/self").0
        XCTAssertEqual(me["Config"]?["NodeName"], .string("from-file"))
        XCTAssertEqual(me["Config"]?["Datacenter"], .string("east"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/data/registry.db"))

        try "http_addr: 127.0.0.1:0\nlisten_port: 1\n".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        let bad = try ChildProcess(TrellisBinary.path, ["registry", "--config", dir + "/bad.yaml"])
        bad.process.waitUntilExit()
        XCTAssertNotEqual(bad.process.terminationStatus, 0, "an unknown setting is refused before anything starts")
    }
}

final class RegistryLogTests: XCTestCase {
    func testJSONLogLinesCarryLevelMessageAndMetadata() async throws {
        let dir = try temporaryDirectory(self)
        let child = try ChildProcess("/bin/sh", ["-c", "exec \"$0\" registry --http-addr 127.0.0.1:0 --data-dir \"$1\" --log-format json 2>&1",
                                                 TrellisBinary.path, dir + "/data"])
        addTeardownBlock { child.kill9() }
        let line = try await child.waitForLine(containing: "registry listening\"")
        let entry = try JSON.parse(line)
        XCTAssertEqual(entry["level"], .string("info"))
        XCTAssertEqual(entry["logger"], .string("trellis.registry"))
        XCTAssertEqual(entry["data_dir"], .string(dir + "/data"))
        XCTAssertTrue(entry["ts"]?.stringValue?.hasSuffix("Z") ?? false)
    }
}
