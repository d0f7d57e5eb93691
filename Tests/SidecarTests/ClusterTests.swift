import Foundation
import NIOCore
import EventIO
@testable import Sidecar
import XCTest

final class ClusterTests: XCTestCase {
    func testOutlierDetectionEjectsButNeverMoreThanTheMaximumShare() {
        var policy = ListenerPolicy.outboundDefault
        policy.outlierDetection.consecutiveErrors = 3
        let cluster = Cluster(name: "c", policy: policy, reactor: try! Reactor())
        cluster.update([EndpointInfo(id: "a", host: "127.0.0.1", port: 1), EndpointInfo(id: "b", host: "127.0.0.1", port: 2)])
        let now = NIODeadline.now()
        let (a, b) = (cluster.endpoints[0], cluster.endpoints[1])
        for _ in 0..<3 { cluster.record(a, failed: true, now: now) }
        XCTAssertTrue(a.isEjected(at: now))
        XCTAssertEqual(a.ejectedUntil, now + .seconds(30))
        for _ in 0..<3 { cluster.record(b, failed: true, now: now) }
        XCTAssertFalse(b.isEjected(at: now), "50% max: the second instance stays")
        var random = FastRandom()
        XCTAssertEqual(cluster.pick(tag: nil, hashKey: nil, tried: TriedInstances(), now: now, random: &random)?.info.id, "b")
        XCTAssertFalse(a.isEjected(at: now + .seconds(31)), "ejection ends")
    }
}
