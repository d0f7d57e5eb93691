import Foundation
import NIOCore
@testable import Policy
import TrellisCore
import XCTest

final class GatewayPolicyParserTests: XCTestCase {
    private let secret = "0123456789abcdef0123456789abcdef"

    func testRulesReadAsHTTPRouteRules() throws {
        let policy = try GatewayPolicyParser.parse("""
            gateway: edge
            identity_headers: {user: X-Caller, roles_claim: groups}
            jwt: {main: {issuer: https://auth.test, audiences: [api], keys: [{alg: HS256, secret: "\(secret)"}]}}
            api_keys: {partners: {header: X-Api-Key, keys: {a: "partner-a-key-0001"}}}
            backends: {load_balancer: least_request, timeouts: {request: 8s}}
            rules:
              - name: products
                matches:
                  - path: {type: PathPrefix, value: /api/products}
                    method: get
                    headers: [{name: X-Canary, value: "1"}]
                    queryParams: [{name: v, value: "[0-9]+", type: RegularExpression}]
                filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /products}}}]
                backendRefs: [{name: catalog, weight: 90}, {name: catalog-next, weight: 10}]
                timeouts: {request: 3s, backendRequest: 1s}
                retry: {codes: [503], attempts: 1, backoff: 50ms}
                auth: {jwt: main, roles: [admin]}
                rate_limit: {requests: 5, per: 1s, key: client}
                cors: {allow_origins: ["https://app.test"], allow_credentials: true}
                max_request_body: 64KiB
              - {name: hooks, matches: [{path: {type: Exact, value: /hook}}], backendRefs: [{name: carrier}], auth: {api_key: partners}}
            """)
        XCTAssertEqual(policy.gateway, "edge")
        XCTAssertEqual(policy.identityHeaders.user, "x-caller")
        XCTAssertEqual(policy.identityHeaders.rolesClaim, "groups")
        XCTAssertEqual(policy.backends.loadBalancer.kind, .leastRequest)
        XCTAssertEqual(policy.backendServices, ["catalog", "catalog-next", "carrier"])
        let rule = try XCTUnwrap(policy.rules.first)
        XCTAssertEqual(rule.matches.first?.path, .prefix("/api/products"))
        XCTAssertEqual(rule.matches.first?.method, "GET")
        XCTAssertEqual(rule.matches.first?.headers, [.init(name: "x-canary", value: "1", isRegularExpression: false)])
        XCTAssertEqual(rule.matches.first?.queryParams.first?.isRegularExpression, true)
        XCTAssertEqual(rule.replacePrefix, "/products")
        XCTAssertEqual(rule.backends.map(\.weight), [90, 10])
        XCTAssertEqual(rule.settings.timeouts.request, .seconds(3))
        XCTAssertEqual(rule.settings.timeouts.perTry, .seconds(1))
        XCTAssertEqual(rule.settings.retries.attempts, 1)
        XCTAssertEqual(rule.settings.retries.conditions, [.connectFailure, .reset, .status(503)])
        XCTAssertEqual(rule.auth, .jwt(provider: "main", roles: ["admin"], scopes: []))
        XCTAssertEqual(rule.settings.rateLimit?.key, .client)
        XCTAssertEqual(rule.cors?.allowedOrigin("https://app.test"), "https://app.test")
        XCTAssertNil(rule.cors?.allowedOrigin("https://evil.test"))
        XCTAssertEqual(rule.maxRequestBody, 64 * 1024)
        XCTAssertEqual(policy.rules[1].settings.timeouts.request, .seconds(8), "rules start from the backends' settings")
        XCTAssertEqual(policy.rules[1].auth, .apiKey(set: "partners"))
        XCTAssertFalse(policy.json.text.contains(secret), "the policy's JSON leaves secrets out")
        XCTAssertFalse(policy.json.text.contains("partner-a-key-0001"))
    }

    func testTheExamplePolicyParses() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gateway-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try secret.write(toFile: dir + "/jwt-secret", atomically: true, encoding: .utf8)
        try "carrier-a: carrier-a-key-000001\n".write(toFile: dir + "/partner-keys.yaml", atomically: true, encoding: .utf8)
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("policies/gateway/example.yaml"), encoding: .utf8)
        let policy = try GatewayPolicyParser.parse(text.replacingOccurrences(of: "/etc/trellis", with: dir))
        XCTAssertEqual(policy.rules.map(\.name), ["login", "products", "orders", "carrier-webhook"])
        XCTAssertEqual(policy.apiKeys["partners"]?.keys, ["carrier-a": "carrier-a-key-000001"])
        XCTAssertEqual(policy.jwtProviders["shop"]?.keys, [.hmac(algorithm: "HS256", secret: Array(secret.utf8))])
    }

    func testAGlobalLimitIsSharedBetweenReplicas() throws {
        let policy = try GatewayPolicyParser.parse("""
            rules: [{name: a, backendRefs: [{name: x}], rate_limit: {requests: 100, per: 1s, burst: 10, key: client, global: true}}]
            """)
        let limit = try XCTUnwrap(policy.rules.first?.settings.rateLimit)
        XCTAssertEqual(limit.share(of: 1), limit)
        XCTAssertEqual(limit.share(of: 4).rate, 25)
        XCTAssertEqual(limit.share(of: 4).burst, 2)
        XCTAssertEqual(limit.share(of: 4).requests, 25)
        var local = limit
        local.global = false
        XCTAssertEqual(local.share(of: 4), local, "a limit without global holds on each replica")
    }

    func testInvalidPoliciesAreRefusedNamingTheField() {
        let cases: [(String, String)] = [
            ("rules: [{name: a, backendRefs: [{name: x}], colour: red}]", "colour"),
            ("rules: [{name: a}]", "rules[0].backendRefs"),
            ("rules: [{name: a, backendRefs: [{name: x, weight: 0}]}]", "at least one weight"),
            ("rules: [{name: a, matches: [{path: {type: RegularExpression, value: \"(\"}}], backendRefs: [{name: x}]}]", "not a regular expression"),
            ("rules: [{name: a, matches: [{path: {type: Glob, value: /x}}], backendRefs: [{name: x}]}]", "Glob"),
            ("rules: [{name: a, matches: [{path: {value: x}}], backendRefs: [{name: x}]}]", "must start with /"),
            ("rules: [{name: a, matches: [{path: {type: Exact, value: /x}}], filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /y}}}], backendRefs: [{name: x}]}]", "PathPrefix"),
            ("rules: [{name: a, backendRefs: [{name: x}], auth: {jwt: nobody}}]", "names no provider"),
            ("rules: [{name: a, backendRefs: [{name: x}], rate_limit: {requests: 1, key: user}}]", "key"),
            ("rules: [{name: a, backendRefs: [{name: x}]}, {name: a, backendRefs: [{name: y}]}]", "used twice"),
            ("jwt: {m: {keys: [{alg: HS256, secret: short}]}}", "at least 32 bytes"),
            ("jwt: {m: {keys: [{alg: none, secret: \"\(secret)\"}]}}", "none"),
            ("jwt: {m: {keys: [{alg: ES256, public_key: \"not a key\"}]}}", "PEM public key"),
            ("jwt: {m: {issuer: x}}", "keys or a jwks_url"),
            ("jwt: {m: {jwks_url: ftp://x/keys}}", "http"),
            ("api_keys: {p: {keys: {a: \"0123456789abcdef\"}}}", "header or query"),
            ("api_keys: {p: {header: x-key, keys: {a: short}}}", "16 bytes"),
        ]
        for (yaml, expected) in cases {
            XCTAssertThrowsError(try GatewayPolicyParser.parse(yaml), yaml) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(yaml): \(error)")
            }
        }
    }
}
