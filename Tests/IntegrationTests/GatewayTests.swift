import ConsulClient
import Foundation
import TrellisCore
import XCTest

/// `trellis gateway` against the real registry and backends that echo what they receive: rules
/// and rewrites, every JWT failure mode (tokens made by PyJWT), API keys, CORS, limits, live
/// policy changes and several workers.
final class GatewayTests: XCTestCase {
    private static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    private static let secret = "0123456789abcdef0123456789abcdef"

    func testRulesMatchRewriteAndSplitByWeight() async throws {
        let registry = try await RegistryUnderTest.start(self)
        try await EchoBackend.register(self, registry, "v1")
        try await EchoBackend.register(self, registry, "v2")
        let gateway = try await GatewayUnderTest(self, registry: registry, policy: """
            rules:
              - name: canary-header
                matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: X-Canary, value: "1"}]}]
                backendRefs: [{name: v2}]
              - name: beta-query
                matches: [{path: {type: PathPrefix, value: /api}, queryParams: [{name: beta, value: "yes"}]}]
                backendRefs: [{name: v2}]
              - name: api
                matches: [{path: {type: PathPrefix, value: /api/v1}}]
                filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
                backendRefs: [{name: v1}]
              - name: exact
                matches: [{path: {type: Exact, value: /status}, method: GET}]
                backendRefs: [{name: v1}]
              - name: login
                matches: [{path: {type: Exact, value: /api-login}}]
                filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /session}}}]
                backendRefs: [{name: v1}]
              - name: items
                matches: [{path: {type: RegularExpression, value: "/items/[0-9]+"}}]
                backendRefs: [{name: v2}]
              - name: split
                matches: [{path: {type: PathPrefix, value: /split}}]
                backendRefs: [{name: v1, weight: 80}, {name: v2, weight: 20}]
            """)
        let rewritten = try await gateway.echo("GET", "/api/v1/orders/7?x=1")
        XCTAssertEqual(rewritten.backend, "v1")
        XCTAssertEqual(rewritten.path, "/orders/7?x=1", "the matched prefix is replaced")
        let fullPath = try await gateway.echo("GET", "/api-login?next=1").path
        XCTAssertEqual(fullPath, "/session?next=1", "the whole path is replaced, the query kept")
        let headerMatched = try await gateway.echo("GET", "/api/v1", headers: ["X-Canary": "1"]).backend
        XCTAssertEqual(headerMatched, "v2", "rules are tried in order")
        let queryMatched = try await gateway.echo("GET", "/api/v1/x?beta=yes").backend
        XCTAssertEqual(queryMatched, "v2")
        let exactMatched = try await gateway.echo("GET", "/status").backend
        XCTAssertEqual(exactMatched, "v1")
        let patternMatched = try await gateway.echo("GET", "/items/42").backend
        XCTAssertEqual(patternMatched, "v2")
        let statuses = try await [gateway.status("POST", "/status"), gateway.status("GET", "/status/more"), gateway.status("GET", "/items/x"),
                                  gateway.status("GET", "/apiv1")]
        XCTAssertEqual(statuses, [404, 404, 404, 404], "method, exact path, regular expression and whole path segments")
        let missing = try await gateway.send("GET", "/nowhere")
        XCTAssertEqual(missing.headers["content-type"], "application/json")
        XCTAssertEqual(try JSON.parse(missing.body)["error"]?.stringValue, "no_route")

        var toV2 = 0
        for _ in 0..<200 where try await gateway.echo("GET", "/split").backend == "v2" { toV2 += 1 }
        XCTAssertTrue((20...60).contains(toV2), "about a fifth of 200 requests go to the 20-weight backend: \(toV2)")
        let traced = try await gateway.echo("GET", "/status")
        XCTAssertEqual(traced.headers["traceparent"]?.count, 55, "the gateway starts a trace")
        XCTAssertNotNil(traced.headers["x-request-id"])
    }

    func testEveryJWTFailureModeAndTheIdentityHeaders() async throws {
        let dir = try temporaryDirectory(self)
        for (name, command) in [("ec", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "\(dir)/ec.pem"]),
                                ("rsa", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "\(dir)/rsa.pem"]),
                                ("k1", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "\(dir)/k1.pem"]),
                                ("k2", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "\(dir)/k2.pem"])] {
            XCTAssertEqual(try runToEnd("/usr/bin/openssl", command).status, 0, name)
            let kind = name == "rsa" ? "rsa" : "ec"
            XCTAssertEqual(try runToEnd("/usr/bin/openssl", [kind, "-in", "\(dir)/\(name).pem", "-pubout", "-out", "\(dir)/\(name).pub.pem"]).status, 0)
        }
        try Self.tool(["jwks", "\(dir)/k1.pub.pem", "k1", "ES256"]).write(toFile: "\(dir)/jwks.json", atomically: true, encoding: .utf8)
        let jwksServer = try ChildProcess("/usr/bin/python3", ["-m", "http.server", "--bind", "127.0.0.1", "--directory", dir, "0"])
        addTeardownBlock { jwksServer.kill9() }
        let jwksPort = try await Self.httpServerPort(jwksServer)

        let registry = try await RegistryUnderTest.start(self)
        try await EchoBackend.register(self, registry, "orders")
        let gateway = try await GatewayUnderTest(self, registry: registry, policy: """
            jwt:
              shared:
                issuer: https://auth.test
                audiences: [shop]
                clock_skew: 1s
                keys: [{alg: HS256, secret: "\(Self.secret)"}]
              ec: {keys: [{alg: ES256, public_key_file: \(dir)/ec.pub.pem}]}
              rsa: {keys: [{alg: RS256, public_key_file: \(dir)/rsa.pub.pem}]}
              rotating: {jwks_url: "http://127.0.0.1:\(jwksPort)/jwks.json", jwks_refresh: 1s}
            rules:
              - {name: admin, matches: [{path: {value: /admin}}], backendRefs: [{name: orders}], auth: {jwt: shared, roles: [admin]}}
              - {name: scoped, matches: [{path: {value: /scoped}}], backendRefs: [{name: orders}], auth: {jwt: shared, scopes: [orders:write]}}
              - {name: shared, matches: [{path: {value: /shared}}], backendRefs: [{name: orders}], auth: {jwt: shared}}
              - {name: ec, matches: [{path: {value: /ec}}], backendRefs: [{name: orders}], auth: {jwt: ec}}
              - {name: rsa, matches: [{path: {value: /rsa}}], backendRefs: [{name: orders}], auth: {jwt: rsa}}
              - {name: rotating, matches: [{path: {value: /rotating}}], backendRefs: [{name: orders}], auth: {jwt: rotating}}
              - {name: public, matches: [{path: {value: /public}}], backendRefs: [{name: orders}]}
            """)
        let good = #"{"sub":"ann","roles":["admin","buyer"],"scope":"orders:read orders:write","iss":"https://auth.test","aud":"shop","exp_in":300}"#
        let token = try Self.tool(["sign", "HS256", Self.secret, good])
        let echoed = try await gateway.echo("GET", "/admin", headers: ["Authorization": "Bearer \(token)", "X-User-Id": "mallory", "X-User-Roles": "root"])
        XCTAssertEqual(echoed.headers["x-user-id"], "ann", "the verified subject, never what the client sent")
        XCTAssertEqual(echoed.headers["x-user-roles"], "admin,buyer")
        let scopedStatus = try await gateway.status("GET", "/scoped", headers: ["Authorization": "Bearer \(token)"])
        XCTAssertEqual(scopedStatus, 200)
        let spoofed = try await gateway.echo("GET", "/public", headers: ["X-User-Id": "mallory", "X-User-Roles": "admin"])
        XCTAssertNil(spoofed.headers["x-user-id"], "identity headers a client sends are dropped, on public routes too")
        XCTAssertNil(spoofed.headers["x-user-roles"])

        func refusal(_ path: String, _ token: String?, _ status: Int, _ error: String?, file: StaticString = #filePath, line: UInt = #line) async throws {
            let answer = try await gateway.send("GET", path, headers: token.map { ["Authorization": "Bearer \($0)"] } ?? [:])
            XCTAssertEqual(answer.status, status, "\(path): \(String(decoding: answer.body, as: UTF8.self))", file: file, line: line)
            let challenge = answer.headers["www-authenticate"] ?? ""
            XCTAssertTrue(challenge.hasPrefix(#"Bearer realm="trellis""#), challenge, file: file, line: line)
            if let error {
                XCTAssertTrue(challenge.contains(#"error="\#(error)""#), challenge, file: file, line: line)
                XCTAssertEqual(try JSON.parse(answer.body)["error"]?.stringValue, error, file: file, line: line)
            }
        }
        func signed(_ claims: String) throws -> String { try Self.tool(["sign", "HS256", Self.secret, claims]) }
        try await refusal("/shared", nil, 401, nil)
        try await refusal("/shared", try signed(#"{"sub":"a","iss":"https://auth.test","aud":"shop","exp_in":-60}"#), 401, "invalid_token")
        try await refusal("/shared", try signed(#"{"sub":"a","iss":"https://auth.test","aud":"shop","exp_in":300,"nbf_in":120}"#), 401, "invalid_token")
        try await refusal("/shared", try signed(#"{"sub":"a","iss":"https://evil.test","aud":"shop","exp_in":300}"#), 401, "invalid_token")
        try await refusal("/shared", try signed(#"{"sub":"a","iss":"https://auth.test","aud":"other","exp_in":300}"#), 401, "invalid_token")
        try await refusal("/shared", try Self.tool(["sign", "HS256", String(Self.secret.reversed()), good]), 401, "invalid_token")
        try await refusal("/shared", try Self.tool(["none", good]), 401, "invalid_token")
        try await refusal("/shared", String(token.dropLast(3)) + "abc", 401, "invalid_token")
        try await refusal("/shared", "not.a-token", 401, "invalid_token")
        try await refusal("/admin", try signed(#"{"sub":"b","roles":["buyer"],"iss":"https://auth.test","aud":"shop","exp_in":300}"#), 403, "insufficient_scope")
        try await refusal("/scoped", try signed(#"{"sub":"b","scope":"orders:read","iss":"https://auth.test","aud":"shop","exp_in":300}"#), 403,
                          "insufficient_scope")
        // An HMAC token is no ES256 token: the algorithm must be the key's.
        try await refusal("/ec", token, 401, "invalid_token")

        let ecUser = try await gateway.echo("GET", "/ec", headers: ["Authorization": "Bearer " + Self.tool(["sign", "ES256", "\(dir)/ec.pem", #"{"sub":"e"}"#])]).headers["x-user-id"]
        XCTAssertEqual(ecUser, "e")
        let rsaUser = try await gateway.echo("GET", "/rsa", headers: ["Authorization": "Bearer " + Self.tool(["sign", "RS256", "\(dir)/rsa.pem", #"{"sub":"r"}"#])]).headers["x-user-id"]
        XCTAssertEqual(rsaUser, "r")

        // A key rotated away from the JWKS stops verifying at the next refresh; the new one starts.
        let fromK1 = try Self.tool(["sign", "ES256", "\(dir)/k1.pem", #"{"sub":"k1","exp_in":300}"#, "k1"])
        let fromK2 = try Self.tool(["sign", "ES256", "\(dir)/k2.pem", #"{"sub":"k2","exp_in":300}"#, "k2"])
        try await eventually(timeout: 15, "the JWKS is fetched") { try await gateway.status("GET", "/rotating", headers: ["Authorization": "Bearer \(fromK1)"]) == 200 }
        try Self.tool(["jwks", "\(dir)/k2.pub.pem", "k2", "ES256"]).write(toFile: "\(dir)/jwks.json", atomically: true, encoding: .utf8)
        try await eventually(timeout: 15, "the new key set is in force") {
            try await gateway.status("GET", "/rotating", headers: ["Authorization": "Bearer \(fromK2)"]) == 200
        }
        try await refusal("/rotating", fromK1, 401, "invalid_token")
        // While the JWKS cannot be fetched, the last good keys stay.
        jwksServer.kill9()
        try await Task.sleep(for: .seconds(2))
        let afterFetchFailure = try await gateway.status("GET", "/rotating", headers: ["Authorization": "Bearer \(fromK2)"])
        XCTAssertEqual(afterFetchFailure, 200)
        let config = String(decoding: try await gateway.admin("/config").body, as: UTF8.self)
        XCTAssertFalse(config.contains(Self.secret), "secrets stay out of /config")
    }

    func testAPIKeysCORSBodyLimitsAndPerClientRateLimits() async throws {
        let registry = try await RegistryUnderTest.start(self)
        try await EchoBackend.register(self, registry, "carrier")
        let gateway = try await GatewayUnderTest(self, registry: registry, policy: """
            jwt: {main: {keys: [{alg: HS256, secret: "\(Self.secret)"}]}}
            api_keys:
              partners: {header: X-Api-Key, query: api_key, keys: {carrier-a: "carrier-a-secret-000", carrier-b: "carrier-b-secret-000"}}
            rules:
              - name: webhook
                matches: [{path: {type: Exact, value: /webhooks/carrier}, method: POST}]
                backendRefs: [{name: carrier}]
                auth: {api_key: partners}
                max_request_body: 1KiB
              - name: web
                matches: [{path: {value: /web}}]
                backendRefs: [{name: carrier}]
                cors: {allow_origins: ["https://app.test"], allow_methods: [GET, PUT], allow_headers: [authorization, content-type],
                       expose_headers: [x-request-id], allow_credentials: true, max_age: 300}
              - name: limited
                matches: [{path: {value: /limited}}]
                backendRefs: [{name: carrier}]
                auth: {jwt: main}
                rate_limit: {requests: 20, per: 1s, burst: 20, key: client}
            """)
        let byHeader = try await gateway.echo("POST", "/webhooks/carrier", headers: ["X-Api-Key": "carrier-a-secret-000"], body: "{}")
        XCTAssertEqual(byHeader.headers["x-user-id"], "carrier-a", "the key's name is the caller")
        let byQuery = try await gateway.echo("POST", "/webhooks/carrier?api_key=carrier-b-secret-000", body: "{}").headers["x-user-id"]
        XCTAssertEqual(byQuery, "carrier-b")
        let wrong = try await gateway.send("POST", "/webhooks/carrier", headers: ["X-Api-Key": "carrier-a-secret-001"], body: Array("{}".utf8))
        XCTAssertEqual(wrong.status, 401)
        XCTAssertEqual(try JSON.parse(wrong.body)["error"]?.stringValue, "invalid_api_key")
        let withoutKey = try await gateway.status("POST", "/webhooks/carrier", body: "{}")
        XCTAssertEqual(withoutKey, 401)
        let large = try await gateway.send("POST", "/webhooks/carrier", headers: ["X-Api-Key": "carrier-a-secret-000"],
                                           body: Array(repeating: UInt8(ascii: "x"), count: 2000))
        XCTAssertEqual(large.status, 413, "a body over the rule's limit is refused from its Content-Length")

        let preflight = try await gateway.send("OPTIONS", "/web/cart", headers: [
            "Origin": "https://app.test", "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "Content-Type, Authorization"])
        XCTAssertEqual(preflight.status, 204, "preflights are answered at the gateway")
        XCTAssertEqual(preflight.headers["access-control-allow-origin"], "https://app.test")
        XCTAssertEqual(preflight.headers["access-control-allow-methods"], "GET, PUT")
        XCTAssertEqual(preflight.headers["access-control-allow-headers"], "content-type, authorization")
        XCTAssertEqual(preflight.headers["access-control-allow-credentials"], "true")
        XCTAssertEqual(preflight.headers["access-control-max-age"], "300")
        let otherOrigin = try await gateway.send("OPTIONS", "/web/cart", headers: ["Origin": "https://evil.test", "Access-Control-Request-Method": "PUT"])
        XCTAssertEqual(otherOrigin.status, 403)
        XCTAssertNil(otherOrigin.headers["access-control-allow-origin"])
        let otherMethod = try await gateway.send("OPTIONS", "/web/cart", headers: ["Origin": "https://app.test", "Access-Control-Request-Method": "DELETE"])
        XCTAssertEqual(otherMethod.status, 403)
        let simple = try await gateway.send("GET", "/web/cart", headers: ["Origin": "https://app.test"])
        XCTAssertEqual(simple.status, 200)
        XCTAssertEqual(simple.headers["access-control-allow-origin"], "https://app.test")
        XCTAssertEqual(simple.headers["access-control-expose-headers"], "x-request-id")
        let foreignOrigin = try await gateway.send("GET", "/web/cart", headers: ["Origin": "https://evil.test"]).headers["access-control-allow-origin"]
        XCTAssertNil(foreignOrigin)

        // 20 requests a second per caller (a burst of 20 rides out pauses of the client): over 10 s one
        // caller gets about 220 (±5 %), with the limit's headers on refusals.
        let ann = "Bearer " + (try Self.tool(["sign", "HS256", Self.secret, #"{"sub":"ann"}"#]))
        let bob = "Bearer " + (try Self.tool(["sign", "HS256", Self.secret, #"{"sub":"bob"}"#]))
        let started = Date()
        // Four clients in parallel send faster than the limit lets through.
        let results = try await withThrowingTaskGroup(of: (Int, (status: Int, headers: [String: String], body: [UInt8])?).self) { group in
            for _ in 0..<4 {
                group.addTask {
                    var allowed = 0
                    var refused: (status: Int, headers: [String: String], body: [UInt8])?
                    while Date().timeIntervalSince(started) < 10 {
                        let answer = try await gateway.send("GET", "/limited", headers: ["Authorization": ann])
                        if answer.status == 200 { allowed += 1 } else { refused = answer }
                    }
                    return (allowed, refused)
                }
            }
            return try await group.reduce(into: [(Int, (status: Int, headers: [String: String], body: [UInt8])?)]()) { $0.append($1) }
        }
        let elapsed = Date().timeIntervalSince(started)
        let allowed = results.reduce(0) { $0 + $1.0 }
        let refused = results.compactMap(\.1).first
        let expected = 20 * elapsed + 20
        XCTAssertTrue(abs(Double(allowed) - expected) <= expected * 0.05, "allowed \(allowed) of an expected \(expected)")
        XCTAssertEqual(refused?.status, 429)
        XCTAssertEqual(refused?.headers["x-ratelimit-limit"], "20")
        XCTAssertNotNil(refused?.headers["retry-after"])
        let bobStatus = try await gateway.status("GET", "/limited", headers: ["Authorization": bob])
        XCTAssertEqual(bobStatus, 200, "another caller has a bucket of its own")
    }

    func testLiveRuleChangesOnTwoWorkersLoseNoRequest() async throws {
        let registry = try await RegistryUnderTest.start(self)
        try await EchoBackend.register(self, registry, "v1")
        try await EchoBackend.register(self, registry, "v2")
        let gateway = try await GatewayUnderTest(self, registry: registry, workers: 2, policy: """
            rules: [{name: a, matches: [{path: {value: /a}}], backendRefs: [{name: v1}]}]
            """)
        let before = try await gateway.echo("GET", "/a").backend
        XCTAssertEqual(before, "v1")
        let load = Task {
            var failures: [Int] = []
            for _ in 0..<400 {
                let status = (try? await gateway.status("GET", "/a")) ?? 0
                if status != 200 { failures.append(status) }
            }
            return failures
        }
        try await Task.sleep(for: .milliseconds(300))
        let changed = """
            rules:
              - {name: b, matches: [{path: {value: /b}}], backendRefs: [{name: v2}]}
              - {name: a, matches: [{path: {value: /a}}], backendRefs: [{name: v2}]}
            """
        let stored = try await registry.put("/v1/kv/trellis/gateways/edge", changed).status
        XCTAssertEqual(stored, 200)
        try await eventually(timeout: 10, "the rule change is in force") { try await gateway.echo("GET", "/a").backend == "v2" }
        let failures = await load.value
        XCTAssertEqual(failures, [], "no request failed while the rules changed")
        let newRule = try await gateway.echo("GET", "/b").backend
        XCTAssertEqual(newRule, "v2")

        let routes = try JSON.parse(try await gateway.admin("/routes").body)
        XCTAssertEqual(routes.arrayValue?.compactMap { $0["name"]?.stringValue }, ["b", "a"])
        let config = try JSON.parse(try await gateway.admin("/config").body)
        XCTAssertEqual(config["source"]?.stringValue, "registry:trellis/gateways/edge")
        let clusters = try JSON.parse(try await gateway.admin("/clusters").body)
        let workers = try XCTUnwrap(clusters.arrayValue)
        XCTAssertEqual(workers.count, 2)
        let served = workers.map { worker in
            ["v1", "v2"].reduce(Int64(0)) { sum, name in
                sum + (worker[name]?["instances"]?.arrayValue ?? []).reduce(Int64(0)) { $0 + ($1["total_requests"]?.intValue ?? 0) }
            }
        }
        XCTAssertTrue(served.allSatisfy { $0 > 0 }, "both workers served requests: \(served)")

        // An invalid policy in the KV is refused whole; the rules in force stay.
        let storedInvalid = try await registry.put("/v1/kv/trellis/gateways/edge", "rules: [{name: a}]").status
        XCTAssertEqual(storedInvalid, 200)
        try await eventually(timeout: 10, "the refusal is counted") {
            String(decoding: try await gateway.admin("/metrics").body, as: UTF8.self).contains("trellis_gateway_policy_rejected_total 1")
        }
        let stillInForce = try await gateway.echo("GET", "/b").backend
        XCTAssertEqual(stillInForce, "v2")
        let metrics = String(decoding: try await gateway.admin("/metrics").body, as: UTF8.self)
        XCTAssertTrue(metrics.contains(#"trellis_gateway_requests_total{direction="edge",upstream="v2",route="a",code_class="2xx"}"#), metrics)
    }

    func testAGlobalLimitIsDividedBetweenTheGatewaysReplicas() async throws {
        let registry = try await RegistryUnderTest.start(self)
        try await EchoBackend.register(self, registry, "api")
        let policy = "rules: [{name: api, backendRefs: [{name: api}], rate_limit: {requests: 20, per: 1s, burst: 10, key: source, global: true}}]"
        let first = try await GatewayUnderTest(self, registry: registry, policy: policy)
        let second = try await GatewayUnderTest(self, registry: registry, policy: policy)
        for gateway in [first, second] {
            try await eventually(timeout: 20, "each replica enforces half of the limit") {
                let routes = try JSON.parse(try await gateway.admin("/routes").body)
                return routes[0]?["rate_limit"]?["requests"]?.intValue == 10
            }
        }
        let started = Date()
        var allowed = 0
        while Date().timeIntervalSince(started) < 3 {
            if try await first.status("GET", "/x") == 200 { allowed += 1 }
        }
        let expected = 10 * Date().timeIntervalSince(started) + 5
        XCTAssertTrue(abs(Double(allowed) - expected) <= expected * 0.05 + 1, "one replica allowed \(allowed) of an expected \(expected)")
    }

    /// `trellis up` with a `gateway:` section: the gateway starts with its own token, reaches strict
    /// sidecars through the intentions written for its backends, and is in `endpoints.env`.
    func testTrellisUpRunsAGatewayInFrontOfStrictServices() async throws {
        let dir = try temporaryDirectory(self)
        let data = dir + "/fleet"
        try """
            rules:
              - name: products
                matches: [{path: {value: /api/products}}]
                filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /products}}}]
                backendRefs: [{name: catalog}]
            """.write(toFile: dir + "/gateway.yaml", atomically: true, encoding: .utf8)
        try """
            gateway: {name: edge, workers: 2, policy: gateway.yaml}
            services:
              - {name: catalog, command: [shop-catalog], health_path: /health}
            """.write(toFile: dir + "/topology.yaml", atomically: true, encoding: .utf8)
        let up = try ChildProcess(TrellisBinary.path, ["up", dir + "/topology.yaml", "--data-dir", data, "--registry-port", "0", "--collector-port", "0"])
        addTeardownBlock { up.kill9(); ShopEndToEndTests.killLeftovers(under: data) }
        _ = try await up.waitForLine(containing: "all 1 instances passing", timeout: 90)
        let endpoints = try String(contentsOfFile: data + "/endpoints.env", encoding: .utf8)
        let url = try XCTUnwrap(endpoints.split(separator: "\n").first { $0.hasPrefix("GATEWAY_URL=") }?.dropFirst("GATEWAY_URL=http://".count))
        let gateway = ConsulClient(address: String(url), environment: [:])
        try await eventually(timeout: 20, "the strict catalog answers through the gateway") {
            (try? await gateway.send("GET", "/api/products"))?.status == 200
        }
        let elsewhere = try await gateway.send("GET", "/elsewhere")
        XCTAssertEqual(elsewhere.status, 404)
        up.process.terminate()
        _ = try await up.waitForLine(containing: "stopped", timeout: 60)
        XCTAssertEqual(ShopEndToEndTests.processes(under: data).map(\.command), [], "processes left behind")
    }

    func testCallsToStrictSidecarsCarryTheGatewaysIdentityAndObeyIntentions() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let local = try await EchoBackend.start(self, "secure")
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "secure", localPort: local, extra: ["--mtls", "strict"])
        let gateway = try await GatewayUnderTest(self, registry: registry, policy: """
            rules: [{name: secure, matches: [{path: {value: /secure}}], backendRefs: [{name: secure}]}]
            """)
        try await eventually(timeout: 20, "the gateway calls the strict sidecar over mutual TLS") {
            (try? await gateway.echo("GET", "/secure/x").backend) == "secure"
        }
        let clusters = String(decoding: try await gateway.admin("/clusters").body, as: UTF8.self)
        XCTAssertTrue(clusters.contains(#""mtls" : true"#) || clusters.contains(#""mtls": true"#), clusters)
        let plaintext = try? await ConsulClient(address: "127.0.0.1:\(sidecar.port)", environment: [:]).send("GET", "/secure/x", timeout: 3)
        XCTAssertNil(plaintext, "the sidecar takes no plaintext caller, so the gateway's call was mutual TLS")
        let denied = try await registry.put("/v1/connect/intentions/exact?source=edge&destination=secure", #"{"Action":"deny"}"#)
        XCTAssertEqual(denied.status, 200)
        try await eventually(timeout: 20, "an intention denying the gateway's identity is enforced") {
            let answer = try await gateway.send("GET", "/secure/x")
            return answer.status == 403 && answer.headers["x-trellis-error"] == "intention_denied"
        }
    }

    func testTheGatewayTerminatesTLSWithItsCertificate() async throws {
        let dir = try temporaryDirectory(self)
        let made = try runToEnd("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                                                     "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                                                     "-keyout", "\(dir)/key.pem", "-out", "\(dir)/cert.pem"])
        XCTAssertEqual(made.status, 0, made.output)
        let registry = try await RegistryUnderTest.start(self)
        try await EchoBackend.register(self, registry, "api")
        let gateway = try await GatewayUnderTest(self, registry: registry, workers: 2, policy: "rules: [{name: api, backendRefs: [{name: api}]}]",
                                                 extra: ["--tls-cert-file", "\(dir)/cert.pem", "--tls-key-file", "\(dir)/key.pem"])
        let answer = try runToEnd("/usr/bin/curl", ["-s", "--cacert", "\(dir)/cert.pem", "-H", "X-Forwarded-Proto: gopher",
                                                    "https://127.0.0.1:\(gateway.port)/over-tls"])
        XCTAssertEqual(answer.status, 0, answer.output)
        let echoed = try JSON.parse(Array(answer.output.utf8))
        XCTAssertEqual(echoed["path"]?.stringValue, "/over-tls")
        XCTAssertEqual(echoed["headers"]?["x-forwarded-proto"]?.stringValue, "https", "the scheme the client used, not the one it claims")
        let plaintext = try runToEnd("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                                                       "http://127.0.0.1:\(gateway.port)/over-tls"])
        XCTAssertEqual(plaintext.output, "000", "plaintext gets no answer on a TLS port")
        let unknownCA = try runToEnd("/usr/bin/curl", ["-s", "-o", "/dev/null", "https://127.0.0.1:\(gateway.port)/over-tls"])
        XCTAssertNotEqual(unknownCA.status, 0, "a client that does not trust the certificate refuses it")
    }

    /// The collector scrapes the gateway (found in the registry); a real Prometheus answers every
    /// query of `dashboards/gateway.json` and loads the gateway's alert rules.
    func testTheGatewayDashboardAndAlertsAnswerFromARealPrometheus() async throws {
        let registry = try await RegistryUnderTest.start(self)
        try await EchoBackend.register(self, registry, "api")
        let gateway = try await GatewayUnderTest(self, registry: registry, policy: """
            jwt: {main: {keys: [{alg: HS256, secret: "\(Self.secret)"}]}}
            rules:
              - {name: open, matches: [{path: {value: /open}}], backendRefs: [{name: api}], rate_limit: {requests: 1, per: 1s}}
              - {name: closed, matches: [{path: {value: /closed}}], backendRefs: [{name: api}], auth: {jwt: main}}
            """)
        let collector = try await CollectorUnderTest(self, registry: registry, config: "scrape: {interval: 1s, timeout: 1s}\n")
        let prometheus = try await ShopEndToEndTests.startPrometheus(dir: try temporaryDirectory(self), collector: collector.address, test: self)
        let queries = try ShopEndToEndTests.dashboardQueries { $0 == "gateway.json" }.prometheus
        XCTAssertEqual(queries.count, 6)
        var empty: [String] = []
        for _ in 0..<60 {
            for path in ["/open", "/open", "/closed", "/nowhere"] { _ = try await gateway.status("GET", path) }
            empty = []
            for query in queries where await ShopEndToEndTests.series(prometheus, query).isEmpty { empty.append(query) }
            if empty.isEmpty { break }
            try await Task.sleep(for: .seconds(1))
        }
        XCTAssertEqual(empty, [], "gateway dashboard queries without data")
        let rules = try JSON.parse(try await prometheus.send("GET", "/api/v1/rules").body)
        let gatewayRules = (rules["data"]?["groups"]?.arrayValue ?? []).filter { $0["name"]?.stringValue == "trellis-gateway" }
            .flatMap { $0["rules"]?.arrayValue ?? [] }
        XCTAssertEqual(gatewayRules.compactMap { $0["name"]?.stringValue }, ["TrellisGatewayHighErrorRatio", "TrellisGatewayRateLimiting"])
        XCTAssertEqual(gatewayRules.filter { $0["health"]?.stringValue == "err" }.count, 0)
    }

    // MARK: Helpers

    /// Runs `Tests/Gateway/jwt_tool.py` (PyJWT) and answers its output line.
    private static func tool(_ arguments: [String]) throws -> String {
        let result = try runToEnd("/usr/bin/python3", [root.appendingPathComponent("Tests/Gateway/jwt_tool.py").path] + arguments)
        guard result.status == 0 else { throw GatewayTestFailure("jwt_tool \(arguments.first ?? ""): \(result.output)") }
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The port python's http.server announces ("Serving HTTP on 127.0.0.1 port N …").
    private static func httpServerPort(_ server: ChildProcess) async throws -> Int {
        let line = try await server.waitForLine(containing: "port ")
        let words = line.split(separator: " ")
        guard let index = words.firstIndex(of: "port"), index + 1 < words.count, let port = Int(words[index + 1]) else {
            throw GatewayTestFailure("no port in \(line)")
        }
        return port
    }
}

struct GatewayTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A backend that answers every request with JSON of what it received: its name, method, path
/// and headers.
enum EchoBackend {
    /// Registered in the registry under its name.
    static func register(_ test: XCTestCase, _ registry: RegistryUnderTest, _ name: String) async throws {
        let port = try await start(test, name)
        let registration = #"{"Name":"\#(name)","ID":"\#(name)-1","Address":"127.0.0.1","Port":\#(port)}"#
        let answer = try await registry.put("/v1/agent/service/register", registration)
        XCTAssertEqual(answer.status, 200)
    }

    /// Started on a free loopback port, which it answers.
    static func start(_ test: XCTestCase, _ name: String) async throws -> Int {
        let script = """
        import http.server, json, sys
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = json.dumps({"backend": sys.argv[1], "method": self.command, "path": self.path,
                                   "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = answer
            def log_message(self, *args): pass
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        print("port", server.server_address[1], flush=True)
        server.serve_forever()
        """
        let child = try ChildProcess("/usr/bin/python3", ["-c", script, name])
        test.addTeardownBlock { child.kill9() }
        return Int(try await child.waitForLine(containing: "port").split(separator: " ")[1])!
    }
}

/// A real `trellis gateway` named `edge` on loopback with a policy file.
final class GatewayUnderTest: @unchecked Sendable {
    let port: Int
    let adminPort: Int
    private let client: ConsulClient
    private let adminClient: ConsulClient

    init(_ test: XCTestCase, registry: RegistryUnderTest, workers: Int = 1, policy: String, extra: [String] = []) async throws {
        port = try freeLoopbackPort()
        adminPort = try freeLoopbackPort()
        let file = try temporaryDirectory(test) + "/gateway.yaml"
        try policy.write(toFile: file, atomically: true, encoding: .utf8)
        let child = try ChildProcess(TrellisBinary.path, [
            "gateway", "--name", "edge", "--port", String(port), "--admin-port", String(adminPort), "--address", "127.0.0.1",
            "--workers", String(workers), "--policy", file, "--registry", registry.address, "--log-level", "warning", "--access-log", "off",
        ] + extra)
        test.addTeardownBlock { child.terminate() }
        client = ConsulClient(address: "127.0.0.1:\(port)", environment: [:])
        adminClient = ConsulClient(address: "127.0.0.1:\(adminPort)", environment: [:])
        try await eventually(timeout: 30, "the gateway's admin port answers") { [adminClient] in (try? await adminClient.send("GET", "/ready"))?.status == 200 }
        try await eventually(timeout: 10, "the gateway knows its backends") { [adminClient] in
            let routes = (try? await adminClient.send("GET", "/routes")).flatMap { try? JSON.parse($0.body) }?.arrayValue ?? []
            return routes.allSatisfy { route in (route["backends"]?.arrayValue ?? []).allSatisfy { ($0["healthy_instances"]?.intValue ?? 0) > 0 } }
        }
    }

    func send(_ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8]? = nil) async throws
        -> (status: Int, headers: [String: String], body: [UInt8]) {
        try await client.send(method, path, body: body, headers: headers)
    }

    func status(_ method: String, _ path: String, headers: [String: String] = [:], body: String? = nil) async throws -> Int {
        try await send(method, path, headers: headers, body: body.map { Array($0.utf8) }).status
    }

    /// What the echo backend received for a request that must succeed.
    func echo(_ method: String, _ path: String, headers: [String: String] = [:], body: String? = nil) async throws
        -> (backend: String, path: String, headers: [String: String]) {
        let answer = try await send(method, path, headers: headers, body: body.map { Array($0.utf8) })
        guard answer.status == 200 else { throw GatewayTestFailure("\(method) \(path): \(answer.status) \(String(decoding: answer.body, as: UTF8.self))") }
        let json = try JSON.parse(answer.body)
        var received: [String: String] = [:]
        for (name, value) in json["headers"]?.objectValue?.pairs ?? [] { received[name] = value.stringValue }
        return (json["backend"]?.stringValue ?? "", json["path"]?.stringValue ?? "", received)
    }

    func admin(_ path: String) async throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        try await adminClient.send("GET", path)
    }
}
