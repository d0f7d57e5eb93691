import Foundation
import NIOCore
import EventIO
@testable import Sidecar
import XCTest

final class LoadBalancerTests: XCTestCase {
    func testWeightedRoundRobinFollowsWeightsSmoothly() {
        let list = testEndpoints([5, 1, 1])
        var random = FastRandom()
        let picks = (0..<7).map { _ in LoadBalancer.pick(.roundRobin, from: list, hashKey: nil, ring: { HashRing(list) }, random: &random)!.info.id }
        XCTAssertEqual(picks.filter { $0 == "e0" }.count, 5)
        XCTAssertEqual(picks, ["e0", "e0", "e1", "e0", "e2", "e0", "e0"])
    }

    func testLeastRequestAvoidsTheBusyInstance() {
        let list = testEndpoints([1, 1])
        list[0].activeRequests = 10
        var random = FastRandom()
        for _ in 0..<20 {
            XCTAssertEqual(LoadBalancer.pick(.leastRequest, from: list, hashKey: nil, ring: { HashRing(list) }, random: &random)?.info.id, "e1")
        }
    }

    func testRingHashIsStickyAndMovesLittleWhenAnInstanceLeaves() {
        let list = testEndpoints([1, 1, 1, 1])
        let ring = HashRing(list)
        let keys = (0..<1000).map { "user-\($0)" }
        let before = keys.map { ring.lookup($0, among: list)!.info.id }
        XCTAssertEqual(before, keys.map { ring.lookup($0, among: list)!.info.id })
        let remaining = Array(list.dropLast())
        let after = keys.map { ring.lookup($0, among: remaining)!.info.id }
        let moved = zip(before, after).filter { $0 != $1 && $0 != "e3" }.count
        XCTAssertEqual(moved, 0, "only keys of the removed instance move")
        XCTAssertGreaterThan(before.filter { $0 == "e3" }.count, 150)
    }
}
