import ConsulClient
import Foundation
import TrellisCore
import XCTest

/// The web UI: its files and Consul's internal UI endpoints against the real registry, then the
/// whole UI in a real headless Chromium against the shop (`Tests/UI/browser_suite.py`).
final class UITests: XCTestCase {
    private static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testTheUIIsServedFromTheBinaryAndBrowsersAreSentToIt() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let page = try await registry.get("/ui/")
        XCTAssertEqual(page.status, 200)
        XCTAssertEqual(page.headers["content-type"], "text/html; charset=utf-8")
        XCTAssertTrue(String(decoding: page.body, as: UTF8.self).contains(#"<script src="/ui/app.js" defer></script>"#))
        let policy = try XCTUnwrap(page.headers["content-security-policy"])
        XCTAssertTrue(policy.contains("default-src 'none'") && policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), policy)
        XCTAssertEqual(page.headers["x-content-type-options"], "nosniff")
        var weight = page.body.count
        for (path, type) in [("/ui/app.js", "text/javascript; charset=utf-8"), ("/ui/app.css", "text/css; charset=utf-8")] {
            let asset = try await registry.get(path)
            XCTAssertEqual(asset.status, 200, path)
            XCTAssertEqual(asset.headers["content-type"], type, path)
            weight += asset.body.count
        }
        XCTAssertLessThan(weight, 200 * 1024, "page, script and style together")
        let script = String(decoding: try await registry.get("/ui/app.js").body, as: UTF8.self)
        XCTAssertFalse(script.contains("http://") || script.contains("https://"), "the UI loads nothing from elsewhere")
        let deepLink = try await registry.get("/ui/services/web")
        XCTAssertEqual(deepLink.body, page.body, "any other path under /ui/ gets the page")

        let bare = try await registry.get("/ui")
        XCTAssertEqual(bare.status, 301)
        XCTAssertEqual(bare.headers["location"], "/ui/")
        let browser = try await registry.client.send("GET", "/", headers: ["Accept": "text/html,application/xhtml+xml;q=0.9"])
        XCTAssertEqual(browser.status, 301, "a browser at the root is sent to the UI, as Consul's agent does")
        XCTAssertEqual(browser.headers["location"], "/ui/")
        let probe = try await registry.get("/")
        XCTAssertEqual(probe.status, 200, "a health check probing the root still passes")
    }

    func testInternalUIEndpointsSummariseServicesAndTheirTopologyAsConsul() async throws {
        let registry = try await RegistryUnderTest.start(self)
        for body in [
            #"{"Name":"web","ID":"web-1","Port":8080,"Tags":["edge"],"Meta":{"trellis_upstreams":"api,db"}}"#,
            #"{"Name":"web","ID":"web-2","Port":8081,"Meta":{"trellis_upstreams":"api"},"Check":{"CheckID":"web-2-ttl","TTL":"60s"}}"#,
            #"{"Name":"api","ID":"api-1","Port":9090,"Tags":["v2"],"Meta":{"trellis_upstreams":"db","external-source":"kubernetes"}}"#,
            #"{"Name":"db","ID":"db-1","Port":5432}"#,
        ] {
            let answer = try await registry.put("/v1/agent/service/register", body)
            XCTAssertEqual(answer.status, 200, String(decoding: answer.body, as: UTF8.self))
        }
        let status1 = try await registry.put("/v1/connect/intentions/exact?source=web&destination=db", #"{"Action":"deny"}"#).status
        XCTAssertEqual(status1, 200)

        let (status, headers, body) = try await registry.get("/v1/internal/ui/services")
        XCTAssertEqual(status, 200)
        let index = try XCTUnwrap(headers["x-consul-index"].flatMap(UInt64.init))
        let listing = try XCTUnwrap(try JSON.parse(body).arrayValue)
        XCTAssertEqual(listing.compactMap { $0["Name"]?.stringValue }, ["api", "consul", "db", "web"])
        let web = try XCTUnwrap(listing.first { $0["Name"]?.stringValue == "web" })
        XCTAssertEqual(web["InstanceCount"]?.intValue, 2)
        XCTAssertEqual(web["Tags"]?.arrayValue?.compactMap(\.stringValue), ["edge"])
        XCTAssertEqual(web["Datacenter"]?.stringValue, "dc1")
        XCTAssertEqual(web["ChecksCritical"]?.intValue, 1, "a TTL check starts critical")
        XCTAssertEqual(web["ChecksPassing"]?.intValue, 1, "the node's serfHealth, counted once for both instances on it")
        XCTAssertEqual(web["InstancesPassing"]?.intValue, 1)
        XCTAssertEqual(web["InstancesCritical"]?.intValue, 1)
        for field in ["Nodes", "ExternalSources", "GatewayConfig", "TransparentProxy", "ConnectNative", "ConnectedWithProxy", "ConnectedWithGateway"] {
            XCTAssertNotNil(web[field], "Consul's ServiceListingSummary has \(field)")
        }
        XCTAssertEqual(listing.first { $0["Name"]?.stringValue == "api" }?["ExternalSources"]?.arrayValue?.compactMap(\.stringValue), ["kubernetes"])

        // A blocking read wakes when an instance's health changes.
        let waiting = Task { try await registry.get("/v1/internal/ui/services?index=\(index)&wait=20s") }
        try await Task.sleep(for: .milliseconds(300))
        let status2 = try await registry.put("/v1/agent/check/pass/web-2-ttl").status
        XCTAssertEqual(status2, 200)
        let woken = try await waiting.value
        let after = try XCTUnwrap(try JSON.parse(woken.body).arrayValue?.first { $0["Name"]?.stringValue == "web" })
        XCTAssertEqual(after["InstancesPassing"]?.intValue, 2, "the change is in the answer")
        XCTAssertGreaterThan(try XCTUnwrap(woken.headers["x-consul-index"].flatMap(UInt64.init)), index)

        let topology = try await registry.json("/v1/internal/ui/service-topology/db")
        XCTAssertEqual(topology["Upstreams"]?.arrayValue?.count, 0)
        let downstreams = try XCTUnwrap(topology["Downstreams"]?.arrayValue)
        XCTAssertEqual(downstreams.compactMap { $0["Name"]?.stringValue }, ["api", "web"])
        let fromWeb = try XCTUnwrap(downstreams.last?["Intention"])
        XCTAssertEqual(fromWeb["Allowed"]?.boolValue, false, "the deny intention decides web → db")
        XCTAssertEqual(fromWeb["HasExact"]?.boolValue, true)
        XCTAssertEqual(downstreams.first?["Intention"]?["Allowed"]?.boolValue, true, "api → db falls to the default (allow)")
        XCTAssertEqual(downstreams.first?["Source"]?.stringValue, "registration")
        XCTAssertEqual(topology["FilteredByACLs"]?.boolValue, false)
        let webTopology = try await registry.json("/v1/internal/ui/service-topology/web")
        XCTAssertEqual(webTopology["Upstreams"]?.arrayValue?.compactMap { $0["Name"]?.stringValue }, ["api", "db"])

        // Without a collector the metrics proxy says so; paths outside its list and unknown sidecars are refused.
        let noCollector = try await registry.get("/v1/internal/ui/metrics-proxy/federate?match[]=up")
        XCTAssertEqual(noCollector.status, 503)
        XCTAssertTrue(String(decoding: noCollector.body, as: UTF8.self).contains("no passing trellis-collector"))
        let status3 = try await registry.get("/v1/internal/ui/metrics-proxy/api/v1/admin/tsdb/delete_series").status
        XCTAssertEqual(status3, 403)
        let status4 = try await registry.get("/v1/internal/ui/sidecar/nope-1/config").status
        XCTAssertEqual(status4, 404)
        let status5 = try await registry.get("/v1/internal/ui/sidecar/web-1/secrets").status
        XCTAssertEqual(status5, 400)
        let noSidecar = try await registry.get("/v1/internal/ui/sidecar/web-1/config")
        XCTAssertEqual(noSidecar.status, 404, "web-1 registered without a sidecar")
        let status6 = try await registry.put("/v1/internal/ui/services").status
        XCTAssertEqual(status6, 405)
    }

    func testUnderACLsTheUINeedsNoTokenButItsDataDoes() async throws {
        let management = "ui-root-secret"
        let registry = RegistryUnderTest(dataDir: try temporaryDirectory(self), arguments: [
            "--acl-enabled", "--acl-default-policy", "deny", "--acl-initial-management-token", management,
        ])
        try await registry.start()
        addTeardownBlock { registry.child?.kill9() }
        let status7 = try await registry.get("/ui/").status
        XCTAssertEqual(status7, 200, "the page itself is served without a token, as Consul's")
        for body in [#"{"Name":"web","ID":"web-1","Port":80}"#, #"{"Name":"db","ID":"db-1","Port":81}"#] {
            let status8 = try await aclRequest(registry.address, management, "PUT", "/v1/agent/service/register", body).status
            XCTAssertEqual(status8, 200)
        }
        let rules = #"service "web" { policy = "read" } node_prefix "" { policy = "read" }"#
        let policy = try await aclRequest(registry.address, management, "PUT", "/v1/acl/policy",
                                          JSON.object(JSONObject([("Name", .string("web-read")), ("Rules", .string(rules))])).text)
        XCTAssertEqual(policy.status, 200, policy.text)
        let created = try await aclRequest(registry.address, management, "PUT", "/v1/acl/token", #"{"Policies":[{"Name":"web-read"}]}"#)
        let narrow = try XCTUnwrap(try JSON.parse(created.text)["SecretID"]?.stringValue)

        let listing = try await aclRequest(registry.address, narrow, "GET", "/v1/internal/ui/services", nil)
        XCTAssertEqual(try JSON.parse(listing.text).arrayValue?.compactMap { $0["Name"]?.stringValue }, ["web"])
        XCTAssertEqual(listing.headers["x-consul-results-filtered-by-acls"], "true")
        let anonymous = try await aclRequest(registry.address, nil, "GET", "/v1/internal/ui/services", nil)
        XCTAssertEqual(anonymous.text, "[]")
        let status9 = try await aclRequest(registry.address, narrow, "GET", "/v1/internal/ui/service-topology/db", nil).status
        XCTAssertEqual(status9, 403)
        let proxy = try await aclRequest(registry.address, narrow, "GET", "/v1/internal/ui/metrics-proxy/federate", nil)
        XCTAssertEqual(proxy.status, 403, "the metrics proxy needs service:read on every service, as in Consul")
        XCTAssertTrue(proxy.text.contains("service:read"), proxy.text)
        let unknown = try await aclRequest(registry.address, "no-such-token", "GET", "/v1/internal/ui/services", nil)
        XCTAssertEqual(unknown.status, 403)
        XCTAssertEqual(unknown.text, "ACL not found")
        let allowed = try await aclRequest(registry.address, management, "GET", "/v1/internal/ui/metrics-proxy/federate", nil)
        XCTAssertEqual(allowed.status, 503, "a management token passes and hears that no collector runs")
    }

    /// The browser suite: the shop under `trellis up`, headless Chromium (the suite starts a second registry itself).
    func testTheUIInARealBrowserAgainstTheShop() async throws {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver", "/usr/bin/python3"] {
            XCTAssertTrue(FileManager.default.isExecutableFile(atPath: tool), "\(tool) is missing (make test installs chromium, chromium-driver, python3-selenium)")
        }
        let (up, data) = try await ShopEndToEndTests.startShop(in: try temporaryDirectory(self), self)
        let listed = try XCTUnwrap(up.output.first { $0.hasPrefix("ui ") }, "trellis up names the UI: \(up.output)")
        XCTAssertTrue(listed.contains("/ui/") && listed.contains("log in with the token in \(data)/tokens/management.token"), listed)
        let screenshots = Self.root.appendingPathComponent(".build/ui-screenshots").path
        let suite = Self.root.appendingPathComponent("Tests/UI/browser_suite.py").path
        let result = try runToEnd("/usr/bin/python3", [suite, data + "/endpoints.env", TrellisBinary.path, screenshots])
        print(result.output)
        XCTAssertEqual(result.status, 0, "browser suite failed:\n\(result.output)")
        XCTAssertTrue(result.output.contains("13 passed, 0 failed"), result.output)
        for name in ["services", "services-failing", "service", "trace", "kv-conflict", "acl", "services-1000", "services-phone", "registry-unreachable"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(screenshots)/\(name).png"), "screenshot \(name)")
        }
    }
}
