import Foundation
import NIOCore
import EventIO
@testable import Policy
@testable import Sidecar
import XCTest

final class RateLimiterTests: XCTestCase {
    func testTokenBucketAdmitsBurstThenRate() {
        let limiter = RateLimiter(policy: RateLimitPolicy(rate: 10, burst: 5, key: .none, requests: 10, period: .seconds(1)))
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let admitted = (0..<20).filter { _ in limiter.take(key: "", at: start).allowed }.count
        XCTAssertEqual(admitted, 5)
        let denied = limiter.take(key: "", at: start)
        XCTAssertFalse(denied.allowed)
        XCTAssertEqual(denied.retryAfter, 0.1, accuracy: 0.001)
        XCTAssertTrue(limiter.take(key: "", at: start + .milliseconds(100)).allowed)
        XCTAssertTrue(limiter.take(key: "other", at: start).allowed, "keys have their own buckets")
    }
}
