import NIOCore
@testable import Sidecar
import XCTest

final class ReplayBufferTests: XCTestCase {
    private func part(_ bytes: Int) -> ByteBuffer { ByteBuffer(repeating: 0x62, count: bytes) }

    func testSentPartsAreKeptWhileTheBodyFits() {
        var buffer = ReplayBuffer(limit: 100)
        buffer.keepSent(part(60))
        buffer.keepSent(part(40))
        XCTAssertTrue(buffer.isReplayable)
        XCTAssertEqual(buffer.parts.map(\.readableBytes), [60, 40])
        XCTAssertEqual(buffer.bytes, 100)
    }

    func testAPartBeyondTheLimitEndsReplayForGood() {
        var buffer = ReplayBuffer(limit: 100)
        buffer.keepSent(part(60))
        buffer.keepSent(part(41))
        XCTAssertFalse(buffer.isReplayable)
        XCTAssertTrue(buffer.parts.isEmpty, "nothing is held for a replay that cannot happen")
        buffer.keepSent(part(1))
        XCTAssertFalse(buffer.isReplayable)
        XCTAssertEqual(buffer.bytes, 0)
    }

    func testWaitingPartsAreAllKeptAndReportWhenReadingShouldPause() {
        var buffer = ReplayBuffer(limit: 100)
        XCTAssertFalse(buffer.wait(part(100)))
        XCTAssertTrue(buffer.wait(part(1)), "past the limit: stop reading the client")
        XCTAssertEqual(buffer.parts.count, 2, "waiting parts must still be sent, whatever their size")
        buffer.settle()
        XCTAssertFalse(buffer.isReplayable, "sent once, too big to send again")
        XCTAssertTrue(buffer.parts.isEmpty)
    }

    func testWaitingPartsThatFitStayForReplay() {
        var buffer = ReplayBuffer(limit: 100)
        _ = buffer.wait(part(30))
        buffer.settle()
        XCTAssertTrue(buffer.isReplayable)
        XCTAssertEqual(buffer.bytes, 30)
    }
}
