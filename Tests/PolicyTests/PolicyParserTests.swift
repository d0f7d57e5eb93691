import Foundation
import NIOCore
@testable import Policy
import TrellisCore
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
                XCTAssertEqual((error as? ConfigError)?.path, field, "\(error)")
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
