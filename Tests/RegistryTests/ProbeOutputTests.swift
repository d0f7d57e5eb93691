@testable import Registry
import XCTest

final class ProbeOutputTests: XCTestCase {
    func testOutputIsCutAtConsulsLimitOnceWithItsMarker() {
        let long = String(repeating: "a", count: 5000)
        let cut = Probes.truncated(long)
        XCTAssertTrue(cut.hasPrefix(String(repeating: "a", count: Probes.outputLimit)))
        XCTAssertTrue(cut.hasSuffix(" ... (captured 4096 of 5000 bytes)"))
        XCTAssertEqual(Probes.truncated("short"), "short")
        XCTAssertEqual(Probes.captured(Array("abc".utf8), of: 3), "abc")
        XCTAssertEqual(Probes.captured(Array("abc".utf8), of: 10), "abc ... (captured 3 of 10 bytes)")
    }
}
