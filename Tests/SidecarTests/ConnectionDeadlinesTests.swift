import NIOCore
@testable import Sidecar
import XCTest

final class ConnectionDeadlinesTests: XCTestCase {
    private let opened = NIODeadline.uptimeNanoseconds(5_000_000_000)
    private let timeouts = ConnectionTimeouts(requestHeaders: .seconds(10), idle: .seconds(60))

    func testAFreshConnectionIsClosedWhenItSendsNothingForTheIdleTimeout() {
        let deadlines = ConnectionDeadlines(timeouts, openedAt: opened)
        XCTAssertEqual(deadlines.deadline, opened + .seconds(60))
        XCTAssertNil(deadlines.expiry(at: opened + .seconds(59)))
        XCTAssertEqual(deadlines.expiry(at: opened + .seconds(60)), .idle)
    }

    func testAHeadRunsAgainstItsOwnDeadlineFromItsFirstByte() {
        var deadlines = ConnectionDeadlines(timeouts, openedAt: opened)
        deadlines.headIncomplete(at: opened + .seconds(1))
        deadlines.headIncomplete(at: opened + .seconds(8))
        XCTAssertEqual(deadlines.deadline, opened + .seconds(11), "later bytes of the same head do not extend it")
        XCTAssertEqual(deadlines.expiry(at: opened + .seconds(11)), .headTooSlow)
    }

    func testARequestInFlightHasNoConnectionDeadlineAndTheIdleOneRestartsAfterIt() {
        var deadlines = ConnectionDeadlines(timeouts, openedAt: opened)
        deadlines.headIncomplete(at: opened)
        deadlines.headComplete()
        XCTAssertNil(deadlines.deadline)
        XCTAssertNil(deadlines.expiry(at: opened + .seconds(3600)))
        deadlines.requestFinished(at: opened + .seconds(90))
        XCTAssertEqual(deadlines.deadline, opened + .seconds(150))
        XCTAssertEqual(deadlines.expiry(at: opened + .seconds(150)), .idle)
        deadlines.headIncomplete(at: opened + .seconds(100))
        XCTAssertEqual(deadlines.deadline, opened + .seconds(110), "a new head's deadline replaces the idle one")
    }
}
