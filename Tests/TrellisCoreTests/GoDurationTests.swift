import TrellisCore
import XCTest

final class GoDurationTests: XCTestCase {
    func testParsesTheFormsConsulClientsSend() {
        XCTAssertEqual(GoDuration.parseNanoseconds("120000ms"), 120_000_000_000)
        XCTAssertEqual(GoDuration.parseNanoseconds("525s"), 525_000_000_000)
        XCTAssertEqual(GoDuration.parseNanoseconds("5m"), 300_000_000_000)
        XCTAssertEqual(GoDuration.parseNanoseconds("1m30s"), 90_000_000_000)
        XCTAssertEqual(GoDuration.parseNanoseconds("1.5h"), 5_400_000_000_000)
        XCTAssertEqual(GoDuration.parseNanoseconds("250us"), 250_000)
        XCTAssertEqual(GoDuration.parseNanoseconds("0"), 0)
    }

    func testRejectsWhatGoRejects() {
        for bad in ["", "10", "s", "10x", "1m30", "--1s", ".s", "1 s"] {
            XCTAssertNil(GoDuration.parseNanoseconds(bad), bad)
        }
    }

    func testFormatsLikeGoDurationString() {
        XCTAssertEqual(GoDuration.format(nanoseconds: 0), "0s")
        XCTAssertEqual(GoDuration.format(nanoseconds: 10_000_000_000), "10s")
        XCTAssertEqual(GoDuration.format(nanoseconds: 90_000_000_000), "1m30s")
        XCTAssertEqual(GoDuration.format(nanoseconds: 3_600_000_000_000), "1h0m0s")
        XCTAssertEqual(GoDuration.format(nanoseconds: 500_000_000), "500ms")
        XCTAssertEqual(GoDuration.format(nanoseconds: 1_500_000_000), "1.5s")
        XCTAssertEqual(GoDuration.format(nanoseconds: 1_500), "1.5µs")
    }

    func testFormatThenParseIsIdentity() {
        for nanos: Int64 in [1, 999, 1_000_000, 61_000_000_000, 3_723_000_000_000, 86_400_000_000_000] {
            XCTAssertEqual(GoDuration.parseNanoseconds(GoDuration.format(nanoseconds: nanos)), nanos)
        }
    }
}
