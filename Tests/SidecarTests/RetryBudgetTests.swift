import Foundation
import NIOCore
import EventIO
@testable import Policy
@testable import Sidecar
import XCTest

final class RetryBudgetTests: XCTestCase {
    func testRetryBudgetCapsRetriesAtAShareOfRequests() {
        var budget = RetryBudget(window: .seconds(10))
        let policy = RetryBudgetPolicy(percent: 20, minRetriesPerSecond: 0, window: .seconds(10))
        let now = NIODeadline.uptimeNanoseconds(5_000_000_000)
        for _ in 0..<100 { budget.recordRequest(at: now) }
        let granted = (0..<100).filter { _ in budget.tryRetry(policy, at: now) }.count
        XCTAssertEqual(granted, 20)
    }

    func testBackoffIsJitteredBelowTheExponentialCeiling() {
        var random = FastRandom()
        for retry in 0..<8 {
            let delay = Backoff.delay(retry: retry, base: .milliseconds(25), max: .milliseconds(250), random: &random)
            XCTAssertLessThanOrEqual(delay, .milliseconds(min(250, 25 << retry)))
        }
    }
}
