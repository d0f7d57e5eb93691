import Foundation
import XCTest

/// Type=notify: every daemon sends READY=1 once serving, STOPPING=1 on SIGTERM, then exits cleanly.
final class SystemdTests: XCTestCase {
    func testRegistryNotifiesReadyAndStopping() async throws {
        let socket = try NotifySocket(self)
        let registry = try await RegistryUnderTest.start(self, environment: ["NOTIFY_SOCKET": socket.path])
        try socket.expectReadyAndStopping(of: XCTUnwrap(registry.child))
    }

    func testCollectorNotifiesReadyAndStopping() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let socket = try NotifySocket(self)
        let collector = try ChildProcess(TrellisBinary.path, [
            "collector", "--http-addr", "127.0.0.1:0", "--data-dir", socket.directory + "/collector", "--registry", registry.address,
            "--log-level", "warning",
        ], environment: ["NOTIFY_SOCKET": socket.path])
        addTeardownBlock { collector.kill9() }
        socket.expectReadyAndStopping(of: collector)
    }

    func testSidecarNotifiesReadyAndStopping() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let upstream = try await ScriptedHTTPServer(self)
        let socket = try NotifySocket(self)
        let sidecar = try ChildProcess(TrellisBinary.path, [
            "sidecar", "--service", "web", "--port", "0", "--local-port", String(upstream.port), "--registry", registry.address,
            "--collector", "off", "--log-level", "warning",
        ], environment: ["NOTIFY_SOCKET": socket.path])
        addTeardownBlock { sidecar.kill9() }
        socket.expectReadyAndStopping(of: sidecar)
    }
}

/// A datagram socket standing in for systemd's notification socket.
private final class NotifySocket {
    let directory: String
    let path: String
    private let fd: Int32

    init(_ test: XCTestCase) throws {
        directory = try temporaryDirectory(test)
        path = directory + "/notify.sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func expectReadyAndStopping(of daemon: ChildProcess, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(receive().contains("READY=1"), file: file, line: line)
        daemon.process.terminate()
        XCTAssertTrue(receive().contains("STOPPING=1"), file: file, line: line)
        daemon.process.waitUntilExit()
        XCTAssertEqual(daemon.process.terminationStatus, 0, file: file, line: line)
    }

    private func receive() -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : ""
    }
}
