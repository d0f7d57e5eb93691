import Foundation
import NIOCore
import EventIO
@testable import Sidecar
import XCTest

final class DeadlineTimerTests: XCTestCase {
    func testDeadlineTimerFiresOnlyForTheLastArmedDeadline() throws {
        let loop = try Reactor.manuallyClocked()
        var fired = 0
        let timer = DeadlineTimer(reactor: loop) { fired += 1 }
        timer.arm(at: loop.now + .seconds(1))
        loop.advanceTime(by: .milliseconds(999))
        XCTAssertEqual(fired, 0)
        loop.advanceTime(by: .milliseconds(1))
        XCTAssertEqual(fired, 1, "fires at the deadline")

        timer.arm(at: loop.now + .seconds(1))
        loop.advanceTime(by: .milliseconds(600))
        timer.disarm()
        timer.arm(at: loop.now + .seconds(1))
        loop.advanceTime(by: .milliseconds(600))
        XCTAssertEqual(fired, 1, "re-arming moves the deadline later")
        loop.advanceTime(by: .milliseconds(400))
        XCTAssertEqual(fired, 2)

        timer.arm(at: loop.now + .seconds(5))
        timer.arm(at: loop.now + .seconds(1))
        loop.advanceTime(by: .seconds(1))
        XCTAssertEqual(fired, 3, "an earlier deadline is honoured")
        loop.advanceTime(by: .seconds(10))
        XCTAssertEqual(fired, 3, "each arming fires at most once")

        timer.arm(at: loop.now + .seconds(1))
        timer.disarm()
        loop.advanceTime(by: .seconds(2))
        timer.arm(at: loop.now + .seconds(1))
        timer.stop()
        loop.advanceTime(by: .seconds(2))
        XCTAssertEqual(fired, 3, "disarmed and stopped timers stay silent")
    }
}
