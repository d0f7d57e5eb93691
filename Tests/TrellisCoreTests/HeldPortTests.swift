import Foundation
import TrellisCore
import XCTest

final class HeldPortTests: XCTestCase {
    /// A UDP socket on 127.0.0.1, bound until closed.
    private func bindUDP(_ port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        XCTAssertEqual(bound, 0)
        return fd
    }

    func testAPortForDNSMustBeFreeForUDPAsWellAsTCP() throws {
        let probe = try HeldPort.hold(0, for: "probe")
        let port = probe.port
        probe.release()
        let udp = bindUDP(port)
        XCTAssertThrowsError(try HeldPort.holdTCPAndUDP(port, for: "dns")) { error in
            XCTAssertTrue("\(error)".contains("dns: port \(port) is in use"), "\(error)")
        }
        XCTAssertNoThrow(try HeldPort.hold(port, for: "tcp only").release(), "the TCP port itself was free, and is released again")
        close(udp)
        let held = try HeldPort.holdTCPAndUDP(port, for: "dns")
        XCTAssertEqual(held.port, port)
        held.release()
    }
}
