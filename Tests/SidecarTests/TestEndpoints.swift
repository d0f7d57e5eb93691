import Foundation
import NIOCore
import EventIO
@testable import Policy
@testable import Sidecar
import XCTest

/// Instances for balancer and cluster tests, with the given weights, named e0, e1, …
func testEndpoints(_ weights: [Int]) -> [Endpoint] {
    let reactor = try! Reactor()
    let limits = ClusterLimits(policy: .init())
    return weights.enumerated().map { index, weight in
        let info = EndpointInfo(id: "e\(index)", host: "127.0.0.1", port: 1000 + index, weight: weight)
        return Endpoint(info: info, pool: ConnectionPool(target: info, service: "test", reactor: reactor, limits: limits))
    }
}
