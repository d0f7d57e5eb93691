import Foundation
import TrellisCore
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
        let down = try await trellis(["services"], environment: ["TRELLIS_ADDR": "127.0.0.1:1"])
        XCTAssertEqual(down.code, 1)
    }
}
