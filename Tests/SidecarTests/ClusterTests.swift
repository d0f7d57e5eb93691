import Foundation
import NIOCore
import EventIO
@testable import Policy
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

    private func cluster(_ instances: [(String, [String])]) throws -> Cluster {
        let cluster = Cluster(name: "c", policy: .outboundDefault, reactor: try Reactor())
        cluster.update(instances.enumerated().map { EndpointInfo(id: $1.0, host: "127.0.0.1", port: 1000 + $0, tags: $1.1) })
        return cluster
    }

    private func ids(_ endpoints: [Endpoint]) -> [String] { endpoints.map(\.info.id) }

    func testAnAttemptNeverGoesToAnInstanceAlreadyTriedWhileAnotherIsLeft() throws {
        let cluster = try cluster([("a", []), ("b", []), ("c", [])])
        let now = NIODeadline.now()
        var tried = TriedInstances<Endpoint>()
        tried.append(cluster.endpoints[0])
        XCTAssertEqual(ids(cluster.candidates(tag: nil, tried: tried, now: now)), ["b", "c"])
        tried.append(cluster.endpoints[2])
        XCTAssertEqual(ids(cluster.candidates(tag: nil, tried: tried, now: now)), ["b"])
        tried.append(cluster.endpoints[1])
        XCTAssertEqual(ids(cluster.candidates(tag: nil, tried: tried, now: now)), ["a", "b", "c"], "all tried: any may be tried again")
    }

    func testCandidatesKeepToTheSubsetAndAvoidEjectedInstancesUnlessNoneIsLeft() throws {
        let cluster = try cluster([("a", ["canary"]), ("b", []), ("c", ["canary"])])
        let now = NIODeadline.now()
        XCTAssertEqual(ids(cluster.candidates(tag: "canary", tried: TriedInstances(), now: now)), ["a", "c"])
        XCTAssertEqual(ids(cluster.candidates(tag: "blue", tried: TriedInstances(), now: now)), [], "an empty subset has no candidate")
        cluster.endpoints[0].ejectedUntil = now + .seconds(30)
        XCTAssertEqual(ids(cluster.candidates(tag: "canary", tried: TriedInstances(), now: now)), ["c"])
        cluster.endpoints[2].ejectedUntil = now + .seconds(30)
        XCTAssertEqual(ids(cluster.candidates(tag: "canary", tried: TriedInstances(), now: now)), ["a", "c"],
                       "better a suspect instance than no answer")
    }
}
