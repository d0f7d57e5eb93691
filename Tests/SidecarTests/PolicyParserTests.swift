import Foundation
import NIOCore
import EventIO
@testable import Sidecar
import XCTest

final class PolicyParserTests: XCTestCase {
    func testSectionsMergeFieldByFieldOverDefaults() throws {
        let policy = try PolicyParser.parse("""
            service: orders
            defaults:
              timeouts: {connect: 500ms, request: 5s}
              retries: {attempts: 3, retry_on: [connect_failure, 503]}
            upstreams:
              catalog:
                load_balancer: least_request
                retries: {attempts: 1}
                routes:
                  - name: canary
                    match: {path_prefix: /products, headers: {x-canary: "1"}}
                    timeouts: {per_try: 1s}
                    split: [{weight: 90, tag: v1}, {weight: 10, tag: v2}]
            inbound:
              rate_limit: {requests: 50, per: 1s, burst: 5, key: "header:X-User"}
            """)
        XCTAssertEqual(policy.service, "orders")
        let catalog = policy.upstream("catalog")
        XCTAssertEqual(catalog.loadBalancer.kind, .leastRequest)
        XCTAssertEqual(catalog.route.retries.attempts, 1)
        XCTAssertEqual(catalog.route.retries.conditions, [.connectFailure, .status(503)], "inherited from defaults")
        XCTAssertEqual(catalog.route.timeouts.connect, .milliseconds(500))
        let canary = try XCTUnwrap(catalog.routes.first)
        XCTAssertEqual(canary.settings.timeouts.perTry, .seconds(1))
        XCTAssertEqual(canary.settings.timeouts.request, .seconds(5), "route inherits the upstream's request timeout")
        XCTAssertEqual(canary.split.map(\.weight), [90, 10])
        XCTAssertEqual(canary.match.headers, [.init(name: "x-canary", value: "1")])
        XCTAssertEqual(policy.upstream("users").route.retries.attempts, 3, "unnamed upstreams get the defaults")
        let limit = try XCTUnwrap(policy.inbound.route.rateLimit)
        XCTAssertEqual(limit.rate, 50)
        XCTAssertEqual(limit.burst, 5)
        XCTAssertEqual(limit.key, .header("x-user"))
    }

    func testErrorsNameTheField() {
        let cases: [(String, String)] = [
            ("upstreams:\n  catalog:\n    retries: {attempts: 99}", "upstreams.catalog.retries.attempts"),
            ("defaults:\n  timeouts: {connect: soon}", "defaults.timeouts.connect"),
            ("upstreams:\n  catalog:\n    load_balancer: fastest", "upstreams.catalog.load_balancer"),
            ("inbound:\n  rate_limt: {requests: 1}", "inbound.rate_limt"),
            ("inbound:\n  routes:\n    - name: x\n      split: [{weight: 1}]", "inbound.routes[0].split"),
            ("upstreams:\n  a:\n    retries: {retry_on: [sometimes]}", "upstreams.a.retries.retry_on[0]"),
            ("upstreams:\n  a:\n    load_balancer: {policy: ring_hash}", "upstreams.a.load_balancer.hash_header"),
            ("- just a list", "(top level)"),
        ]
        for (yaml, field) in cases {
            XCTAssertThrowsError(try PolicyParser.parse(yaml), yaml) { error in
                XCTAssertEqual((error as? PolicyError)?.field, field, "\(error)")
            }
        }
    }

    func testEmptyDocumentIsTheDefaultPolicy() throws {
        XCTAssertEqual(try PolicyParser.parse(""), SidecarPolicy())
    }

    func testEffectivePolicyRendersAsJSON() throws {
        let policy = try PolicyParser.parse("upstreams:\n  catalog:\n    timeouts: {per_try: 250ms}")
        let text = policy.json.text
        XCTAssertTrue(text.contains(#""per_try":"250ms""#), text)
    }
}

final class TraceContextTests: XCTestCase {
    /// The head the sidecar sends upstream for a GET with `fields`, parsed back.
    private func forwarded(_ fields: String, random: inout FastRandom) throws -> (trace: TraceContext, upstream: MessageHead) {
        let head = try parseRequest("GET / HTTP/1.1\r\nHost: x\r\n\(fields)\r\n")
        let trace = TraceContext(headers: head, random: &random)
        let upstream = HeaderRules.upstreamRequest(head, client: "127.0.0.1", trace: trace, allocator: ByteBufferAllocator())
        return (trace, try parseRequest(String(buffer: upstream)))
    }

    func testW3CParentKeepsTraceAndGetsNewSpan() throws {
        var random = FastRandom()
        let (trace, upstream) = try forwarded("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\ntracestate: a=b\r\n",
                                              random: &random)
        XCTAssertEqual(trace.traceID, "4bf92f3577b34da6a3ce929d0e0e4736")
        XCTAssertEqual(trace.parentSpanID, "00f067aa0ba902b7")
        let out = upstream.first(name: "traceparent")!
        XCTAssertTrue(out.hasPrefix("00-4bf92f3577b34da6a3ce929d0e0e4736-"))
        XCTAssertFalse(out.contains("00f067aa0ba902b7"))
        XCTAssertEqual(upstream.fields.filter { $0.kind == .traceparent }.count, 1, "the incoming traceparent is replaced")
        XCTAssertEqual(upstream.first(name: "tracestate"), "a=b")
        let requestID = Array(try XCTUnwrap(upstream.first(name: "x-request-id")))
        XCTAssertEqual(requestID.count, 36)
        XCTAssertEqual([8, 13, 18, 23].map { requestID[$0] }, ["-", "-", "-", "-"])
        XCTAssertEqual(requestID[14], "4", "a version 4 UUID")
        XCTAssertTrue("89ab".contains(requestID[19]), "of the RFC 4122 variant")
        XCTAssertEqual(String(requestID), trace.requestID)
    }

    func testInvalidTraceparentStartsANewTrace() throws {
        var random = FastRandom()
        for bad in ["00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-xyz-00f067aa0ba902b7-01", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"] {
            let trace = TraceContext(headers: try parseRequest("GET / HTTP/1.1\r\ntraceparent: \(bad)\r\n\r\n"), random: &random)
            XCTAssertNil(trace.parentSpanID, bad)
            XCTAssertEqual(trace.traceID.count, 32)
        }
    }

    func testB3SingleAndMultiAreAcceptedAndPropagatedInKind() throws {
        var random = FastRandom()
        let (a, single) = try forwarded("b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1\r\n", random: &random)
        XCTAssertEqual(a.traceID, "80f198ee56343ba864fe8b2a57d3eff7")
        XCTAssertTrue(single.first(name: "b3")!.hasSuffix("-1-e457b5a2e4d86bd1"))

        let (b, multi) = try forwarded("X-B3-TraceId: 64fe8b2a57d3eff7\r\nX-B3-SpanId: 05e3ac9a4f6e3b90\r\nX-B3-Sampled: 0\r\n", random: &random)
        XCTAssertEqual(b.traceID, "000000000000000064fe8b2a57d3eff7")
        XCTAssertFalse(b.sampled)
        XCTAssertEqual(multi.first(name: "x-b3-parentspanid"), "05e3ac9a4f6e3b90")
        XCTAssertEqual(multi.first(name: "x-b3-spanid"), b.spanID)
        XCTAssertEqual(multi.fields.filter { $0.kind == .b3Multi }.count, 4, "the incoming B3 fields are replaced")
        XCTAssertEqual(multi.first(name: "traceparent")?.hasSuffix("-00"), true)
    }
}

final class DataPlanePartsTests: XCTestCase {
    private func endpoints(_ weights: [Int]) -> [Endpoint] {
        let reactor = try! Reactor()
        let limits = ClusterLimits(policy: .init())
        return weights.enumerated().map { index, weight in
            let info = EndpointInfo(id: "e\(index)", host: "127.0.0.1", port: 1000 + index, weight: weight)
            return Endpoint(info: info, pool: ConnectionPool(target: info, reactor: reactor, limits: limits))
        }
    }

    func testWeightedRoundRobinFollowsWeightsSmoothly() {
        let list = endpoints([5, 1, 1])
        var random = FastRandom()
        let picks = (0..<7).map { _ in LoadBalancer.pick(.roundRobin, from: list, hashKey: nil, ring: { HashRing(list) }, random: &random)!.info.id }
        XCTAssertEqual(picks.filter { $0 == "e0" }.count, 5)
        XCTAssertEqual(picks, ["e0", "e0", "e1", "e0", "e2", "e0", "e0"])
    }

    func testLeastRequestAvoidsTheBusyInstance() {
        let list = endpoints([1, 1])
        list[0].activeRequests = 10
        var random = FastRandom()
        for _ in 0..<20 {
            XCTAssertEqual(LoadBalancer.pick(.leastRequest, from: list, hashKey: nil, ring: { HashRing(list) }, random: &random)?.info.id, "e1")
        }
    }

    func testRingHashIsStickyAndMovesLittleWhenAnInstanceLeaves() {
        let list = endpoints([1, 1, 1, 1])
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

    func testRetryBudgetCapsRetriesAtAShareOfRequests() {
        var budget = RetryBudget(window: .seconds(10))
        let policy = RetryBudgetPolicy(percent: 20, minRetriesPerSecond: 0, window: .seconds(10))
        let now = NIODeadline.uptimeNanoseconds(5_000_000_000)
        for _ in 0..<100 { budget.recordRequest(at: now) }
        let granted = (0..<100).filter { _ in budget.tryRetry(policy, at: now) }.count
        XCTAssertEqual(granted, 20)
    }

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
        XCTAssertEqual(cluster.pick(tag: nil, hashKey: nil, tried: [], now: now, random: &random)?.info.id, "b")
        XCTAssertFalse(a.isEjected(at: now + .seconds(31)), "ejection ends")
    }

    func testBackoffIsJitteredBelowTheExponentialCeiling() {
        var random = FastRandom()
        for retry in 0..<8 {
            let delay = Backoff.delay(retry: retry, base: .milliseconds(25), max: .milliseconds(250), random: &random)
            XCTAssertLessThanOrEqual(delay, .milliseconds(min(250, 25 << retry)))
        }
    }
    func testDeadlineTimerFiresOnlyForTheLastArmedDeadline() throws {
        let loop = try Reactor.manuallyClocked()
        var fired = 0
        let timer = DeadlineTimer(reactor: loop) { fired += 1 }
        timer.arm(in: .seconds(1))
        loop.advanceTime(by: .milliseconds(999))
        XCTAssertEqual(fired, 0)
        loop.advanceTime(by: .milliseconds(1))
        XCTAssertEqual(fired, 1, "fires at the deadline")

        timer.arm(in: .seconds(1))
        loop.advanceTime(by: .milliseconds(600))
        timer.disarm()
        timer.arm(in: .seconds(1))
        loop.advanceTime(by: .milliseconds(600))
        XCTAssertEqual(fired, 1, "re-arming moves the deadline later")
        loop.advanceTime(by: .milliseconds(400))
        XCTAssertEqual(fired, 2)

        timer.arm(in: .seconds(5))
        timer.arm(in: .seconds(1))
        loop.advanceTime(by: .seconds(1))
        XCTAssertEqual(fired, 3, "an earlier deadline is honoured")
        loop.advanceTime(by: .seconds(10))
        XCTAssertEqual(fired, 3, "each arming fires at most once")

        timer.arm(in: .seconds(1))
        timer.disarm()
        loop.advanceTime(by: .seconds(2))
        timer.arm(in: .seconds(1))
        timer.stop()
        loop.advanceTime(by: .seconds(2))
        XCTAssertEqual(fired, 3, "disarmed and stopped timers stay silent")
    }
}

final class ShippedPoliciesTests: XCTestCase {
    func testEveryPolicyInThePoliciesDirectoryIsValid() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let files = ["policies/defaults.yaml", "policies/examples/orders.yaml", "policies/examples/strict-timeouts.yaml"]
        for file in files {
            let text = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
            XCTAssertNoThrow(try PolicyParser.parse(text), file)
        }
        let defaults = try PolicyParser.parse(try String(contentsOf: root.appendingPathComponent(files[0]), encoding: .utf8))
        var builtIn = SidecarPolicy()
        builtIn.service = "example"
        XCTAssertEqual(defaults, builtIn, "defaults.yaml spells out the built-in policy")
    }
}
