import Foundation
import XCTest

final class SystemdTests: XCTestCase {
    /// Type=notify: READY=1 once serving, STOPPING=1 on SIGTERM, then a clean exit.
    func testNotifiesReadyAndStoppingOverNotifySocket() async throws {
        let dir = try temporaryDirectory(self)
        let socketPath = dir + "/notify.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in socketPath.utf8.enumerated() { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        let registry = try await RegistryUnderTest.start(self, environment: ["NOTIFY_SOCKET": socketPath])
        XCTAssertTrue(receive(fd).contains("READY=1"))
        registry.child?.process.terminate()
        XCTAssertTrue(receive(fd).contains("STOPPING=1"))
        registry.child?.process.waitUntilExit()
        XCTAssertEqual(registry.child?.process.terminationStatus, 0)
    }

    private func receive(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : ""
    }
}
