import EventIO
import NIOCore
@testable import Policy
@testable import Sidecar
import XCTest

/// Route selection: the first route whose match fits wins, else the default; canary subsets by weight.
final class RouteRuntimeTests: XCTestCase {
    private let metrics = SidecarMetrics()

    private func listener(_ routes: [Route]) throws -> ListenerRuntime {
        var policy = ListenerPolicy.outboundDefault
        policy.routes = routes
        return ListenerRuntime(direction: "outbound", cluster: Cluster(name: "catalog", policy: policy, reactor: try Reactor()),
                               policy: policy, metrics: metrics)
    }

    private func route(_ name: String, _ match: RouteMatch, split: [SplitTarget] = []) -> Route {
        Route(name: name, match: match, settings: ListenerPolicy.outboundDefault.route, split: split)
    }

    private func chosen(_ listener: ListenerRuntime, _ request: String) throws -> String {
        listener.route(for: try parseRequest(request + "\r\n")).name
    }

    func testTheFirstMatchingRouteWinsAndTheRestGoToTheDefault() throws {
        let listener = try listener([
            route("writes", RouteMatch(pathPrefix: "/items", methods: ["POST", "PUT"])),
            route("beta", RouteMatch(pathPrefix: "/items", headers: [.init(name: "x-beta", value: "1")])),
            route("flagged", RouteMatch(pathPrefix: "/", headers: [.init(name: "x-flag", value: "")])),
            route("items", RouteMatch(pathPrefix: "/items")),
        ])
        XCTAssertEqual(try chosen(listener, "POST /items/1 HTTP/1.1\r\nContent-Length: 0\r\n"), "writes")
        XCTAssertEqual(try chosen(listener, "GET /items/1 HTTP/1.1\r\nx-beta: 1\r\n"), "beta")
        XCTAssertEqual(try chosen(listener, "GET /items/1 HTTP/1.1\r\nx-beta: 2\r\n"), "items", "the header's value must be equal")
        XCTAssertEqual(try chosen(listener, "GET /other HTTP/1.1\r\nx-flag: anything\r\n"), "flagged", "an empty value asks for presence")
        XCTAssertEqual(try chosen(listener, "GET /other HTTP/1.1\r\n"), "default")
        XCTAssertEqual(try chosen(listener, "GET /item HTTP/1.1\r\n"), "default", "a path shorter than the prefix does not match")
    }

    func testCanarySubsetsAreDrawnByWeight() throws {
        let listener = try listener([route("all", RouteMatch(), split: [SplitTarget(weight: 90, tag: nil), SplitTarget(weight: 10, tag: "canary")])])
        let route = listener.route(for: try parseRequest("GET / HTTP/1.1\r\n\r\n"))
        var random = FastRandom()
        let canaries = (0..<10_000).filter { _ in route.pickSubset(random: &random) == "canary" }.count
        XCTAssertEqual(Double(canaries), 1_000, accuracy: 200)
    }

    func testReapplyingAnUnchangedRateLimitKeepsItsBuckets() throws {
        var settings = ListenerPolicy.outboundDefault.route
        settings.rateLimit = RateLimitPolicy(rate: 1, burst: 1, key: .none, requests: 1, period: .seconds(1))
        var policy = ListenerPolicy.outboundDefault
        policy.route = settings
        let listener = ListenerRuntime(direction: "outbound", cluster: Cluster(name: "c", policy: policy, reactor: try Reactor()),
                                       policy: policy, metrics: metrics)
        let limiter = try XCTUnwrap(listener.defaultRoute.rateLimiter)
        listener.apply(policy, metrics: metrics)
        XCTAssertTrue(listener.defaultRoute.rateLimiter === limiter)
        policy.route.rateLimit?.burst = 2
        listener.apply(policy, metrics: metrics)
        XCTAssertFalse(listener.defaultRoute.rateLimiter === limiter, "a changed limit starts afresh")
    }
}
