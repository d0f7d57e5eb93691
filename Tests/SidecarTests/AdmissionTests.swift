import EventIO
import NIOCore
@testable import Policy
@testable import Sidecar
import XCTest

final class AdmissionTests: XCTestCase {
    private let metrics = SidecarMetrics()
    private let now = NIODeadline.uptimeNanoseconds(5_000_000_000)

    private func route(rateLimit: RateLimitPolicy?) throws -> RouteRuntime {
        RouteRuntime(name: "api", match: nil, settings: RouteSettings(timeouts: .init(), retries: .init(), rateLimit: rateLimit),
                     split: [], backends: [(try cluster(), 1)], previous: nil,
                     stats: .init(metrics, direction: "inbound", upstream: "local", route: "api"))
    }

    private func cluster(maxRequests: Int = 1024) throws -> Cluster {
        var policy = ListenerPolicy.inboundDefault
        policy.circuitBreaker.maxRequests = maxRequests
        return Cluster(name: "local", policy: policy, reactor: try Reactor())
    }

    private func admit(_ route: RouteRuntime, _ cluster: Cluster, client: String = "10.0.0.9",
                       headers: String = "") throws -> Admission.Verdict {
        Admission.admit(try parseRequest("GET /x HTTP/1.1\r\nHost: a\r\n\(headers)\r\n"), route: route, cluster: cluster, client: client,
                        now: now, metrics: metrics, allocator: ByteBufferAllocator())
    }

    private func lines(_ headers: ByteBuffer?) -> [String] {
        String(buffer: headers ?? ByteBuffer()).split(separator: "\r\n").map(String.init)
    }

    func testARateLimitedRouteCountsDownThenRefusesWith429AndRetryAfter() throws {
        let route = try route(rateLimit: RateLimitPolicy(rate: 1, burst: 2, key: .source, requests: 2, period: .seconds(2)))
        let cluster = try cluster()
        guard case .admitted(let first) = try admit(route, cluster) else { return XCTFail("the first request passes") }
        XCTAssertEqual(lines(first), ["X-RateLimit-Limit: 2", "X-RateLimit-Remaining: 1", "X-RateLimit-Reset: 1"])
        guard case .admitted = try admit(route, cluster) else { return XCTFail("the burst is two") }
        guard case .refused(let answer, let headers) = try admit(route, cluster) else { return XCTFail("the third is refused") }
        XCTAssertEqual(answer, LocalAnswer(status: .tooManyRequests, reason: "rate_limited", message: "rate limit of route api exceeded"))
        XCTAssertEqual(lines(headers), ["X-RateLimit-Limit: 2", "X-RateLimit-Remaining: 0", "X-RateLimit-Reset: 2", "Retry-After: 1"])
        guard case .admitted = try admit(route, cluster, client: "10.0.0.10") else { return XCTFail("another client has its own bucket") }
        XCTAssertEqual(cluster.limits.activeRequests, 3, "admitted requests count as active")
    }

    func testTheBreakerRefusesPastMaxRequestsWith503() throws {
        let route = try route(rateLimit: nil)
        let cluster = try cluster(maxRequests: 1)
        guard case .admitted(nil) = try admit(route, cluster) else { return XCTFail("no rate limit, no headers") }
        guard case .refused(let answer, nil) = try admit(route, cluster) else { return XCTFail("one active request is the limit") }
        XCTAssertEqual(answer, LocalAnswer(status: .serviceUnavailable, reason: "overflow",
                                           message: "upstream local: too many active requests (circuit breaker max_requests 1)"))
        cluster.limits.activeRequests -= 1
        guard case .admitted = try admit(route, cluster) else { return XCTFail("admitted again once the first is done") }
    }

    func testAHeaderKeyedLimitSharesABucketPerHeaderValue() throws {
        let route = try route(rateLimit: RateLimitPolicy(rate: 1, burst: 1, key: .header("x-user"), requests: 1, period: .seconds(1)))
        let cluster = try cluster()
        guard case .admitted = try admit(route, cluster, client: "a", headers: "x-user: ann\r\n") else { return XCTFail() }
        guard case .refused = try admit(route, cluster, client: "b", headers: "x-user: ann\r\n") else { return XCTFail("same user") }
        guard case .admitted = try admit(route, cluster, client: "a", headers: "x-user: bob\r\n") else { return XCTFail("other user") }
    }
}
