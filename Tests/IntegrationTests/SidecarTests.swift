import ConsulClient
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TrellisCore
import TrellisHTTP
import XCTest

/// A real `trellis sidecar` on free loopback ports.
final class SidecarUnderTest: @unchecked Sendable {
    let child: ChildProcess
    let port: Int
    let adminPort: Int
    let upstreamPorts: [String: Int]

    init(_ test: XCTestCase, registry: RegistryUnderTest, service: String, upstreams: [String] = [], localPort: Int? = nil,
         policy: String? = nil, extra: [String] = [], command: [String] = []) async throws {
        port = try freeLoopbackPort()
        adminPort = try freeLoopbackPort()
        var ports: [String: Int] = [:]
        var arguments = ["sidecar", "--service", service, "--port", String(port), "--admin-port", String(adminPort),
                         "--registry", registry.address, "--check-interval", "500ms", "--log-level", "warning"]
        for name in upstreams {
            ports[name] = try freeLoopbackPort()
            arguments += ["--upstream", "\(name):\(ports[name]!)"]
        }
        upstreamPorts = ports
        if let localPort { arguments += ["--local-port", String(localPort)] }
        if let policy {
            let file = try temporaryDirectory(test) + "/policy.yaml"
            try policy.write(toFile: file, atomically: true, encoding: .utf8)
            arguments += ["--policy", file]
        }
        arguments += extra
        if !command.isEmpty { arguments += ["--"] + command }
        let child = try ChildProcess(TrellisBinary.path, arguments)
        self.child = child
        // SIGTERM: the sidecar stops the service it supervises (SIGKILL would orphan it).
        test.addTeardownBlock { child.terminate() }
        let admin = ConsulClient(address: "127.0.0.1:\(adminPort)")
        try await eventually(timeout: 30, "sidecar admin port answers") { (try? await admin.send("GET", "/config"))?.status == 200 }
    }

    func get(_ path: String, port: Int? = nil, headers: [String: String] = [:]) async throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        try await send("GET", path, port: port, headers: headers)
    }

    func send(_ method: String, _ path: String, port: Int? = nil, headers: [String: String] = [:],
              body: [UInt8]? = nil) async throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port ?? self.port)\(path)")!)
        request.httpMethod = method
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response): (Data, URLResponse)
        if let body {
            (data, response) = try await URLSession.shared.upload(for: request, from: Data(body))
        } else {
            (data, response) = try await URLSession.shared.data(for: request)
        }
        let http = response as! HTTPURLResponse
        var out: [String: String] = [:]
        for (name, value) in http.allHeaderFields { out[String(describing: name).lowercased()] = String(describing: value) }
        return (http.statusCode, out, [UInt8](data))
    }

    func upstream(_ name: String, _ path: String = "/", headers: [String: String] = [:]) async throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        try await get(path, port: upstreamPorts[name]!, headers: headers)
    }

    func admin(_ path: String) async throws -> String {
        String(decoding: try await get(path, port: adminPort).body, as: UTF8.self)
    }

    /// The value of one sample in the sidecar's `/metrics`, e.g. `trellis_sidecar_retries_total{upstream="catalog"}`.
    func metric(_ series: String) async throws -> Double? {
        let text = try await admin("/metrics")
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.split(separator: " ").last!)
        }
        return nil
    }
}

final class SidecarTests: XCTestCase {
    private func register(_ registry: RegistryUnderTest, _ service: String, _ server: ScriptedHTTPServer, tags: [String] = [],
                          ttl: Bool = false) async throws {
        let check = ttl ? #", "Check": {"CheckID": "ttl-\#(server.port)", "TTL": "60s", "Status": "passing"}"# : ""
        let tagList = tags.map { "\"\($0)\"" }.joined(separator: ",")
        let (status, _, body) = try await registry.put("/v1/agent/service/register", """
            {"ID": "\(service)-\(server.port)", "Name": "\(service)", "Address": "127.0.0.1", "Port": \(server.port), "Tags": [\(tagList)]\(check)}
            """)
        XCTAssertEqual(status, 200, String(decoding: body, as: UTF8.self))
    }

    private func port(of body: [UInt8]) -> Int? {
        let words = String(decoding: body, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard let index = words.firstIndex(of: "port") else { return nil }
        return Int(words[index + 1])
    }

    /// Sends `count` GETs from `concurrency` clients and returns the statuses (-1: no complete response).
    private func load(_ sidecar: SidecarUnderTest, upstream: String, count: Int, concurrency: Int,
                      during: (() async throws -> Void)? = nil) async throws -> [Int] {
        try await withThrowingTaskGroup(of: [Int].self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    var statuses: [Int] = []
                    // A response cut short (or none) counts as -1.
                    for _ in 0..<(count / concurrency) { statuses.append((try? await sidecar.upstream(upstream, "/item"))?.status ?? -1) }
                    return statuses
                }
            }
            if let during {
                try await Task.sleep(for: .milliseconds(300))
                try await during()
            }
            var all: [Int] = []
            for try await statuses in group { all += statuses }
            return all
        }
    }

    func testBalancesAcrossInstancesAndSavesEveryRequestWhenOneDiesOrFails() async throws {
        let registry = try await RegistryUnderTest.start(self)
        var servers: [ScriptedHTTPServer] = []
        for _ in 0..<4 { servers.append(try await ScriptedHTTPServer(self, keepAlive: true)) }
        for server in servers { try await register(registry, "catalog", server) }
        let local = try await ScriptedHTTPServer(self)
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "orders", upstreams: ["catalog"], localPort: local.port)
        try await eventually("four instances discovered") {
            let clusters = try await sidecar.admin("/clusters")
            return servers.allSatisfy { clusters.contains("catalog-\($0.port)") }
        }

        var seen = Set<Int>()
        for _ in 0..<8 { seen.insert(port(of: try await sidecar.upstream("catalog").body) ?? 0) }
        XCTAssertEqual(seen, Set(servers.map(\.port)), "round robin reaches every instance")

        let killed = try await load(sidecar, upstream: "catalog", count: 600, concurrency: 6) { servers[0].stop() }
        XCTAssertEqual(killed.count, 600)
        XCTAssertEqual(killed.filter { $0 != 200 }.count, 0, "failed requests reached the client: \(Set(killed))")
        let failing = try await load(sidecar, upstream: "catalog", count: 600, concurrency: 6) { try servers[1].answer(503) }
        XCTAssertEqual(failing.filter { $0 != 200 }.count, 0, "503s reached the client: \(Set(failing))")
        let retries = try await sidecar.metric(#"trellis_sidecar_retries_total{upstream="catalog"}"#)
        XCTAssertGreaterThan(retries ?? 0, 0)
        let ejections = try await sidecar.metric(#"trellis_sidecar_ejections_total{upstream="catalog"}"#)
        XCTAssertGreaterThan(ejections ?? 0, 0, "outlier detection ejected a failing instance")
    }

    func testNoRequestFailsWhenAnInstanceSidecarIsKilledMidLoad() async throws {
        let registry = try await RegistryUnderTest.start(self)
        var instances: [SidecarUnderTest] = []
        for _ in 0..<3 {
            let server = try await ScriptedHTTPServer(self, keepAlive: true)
            instances.append(try await SidecarUnderTest(self, registry: registry, service: "catalog", localPort: server.port))
        }
        let local = try await ScriptedHTTPServer(self)
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "orders", upstreams: ["catalog"], localPort: local.port)
        try await eventually(timeout: 20, "three instance sidecars discovered") {
            let clusters = try await sidecar.admin("/clusters")
            return instances.allSatisfy { clusters.contains("127.0.0.1:\($0.port)") }
        }
        let statuses = try await load(sidecar, upstream: "catalog", count: 2200, concurrency: 8) { instances[0].child.kill9() }
        XCTAssertEqual(statuses.count, 2200)
        XCTAssertEqual(statuses.filter { $0 != 200 }.count, 0, "failed requests reached the client: \(Set(statuses))")
    }

    func testAResponseCutBeforeItsLengthIsRetriedOnAnotherInstance() async throws {
        let registry = try await RegistryUnderTest.start(self)
        // Announces 361 bytes, sends 100 and closes: as an instance that dies between head and body.
        let script = """
        import socket, sys
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
        print("port %d" % s.getsockname()[1], flush=True)
        while True:
            c, _ = s.accept()
            c.recv(65536)
            c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 361\\r\\n\\r\\n" + b"x" * 100)
            c.close()
        """
        let cutting = try ChildProcess("/usr/bin/env", ["python3", "-c", script])
        addTeardownBlock { cutting.kill9() }
        let cuttingPort = Int(try await cutting.waitForLine(containing: "port ").split(separator: " ")[1])!
        let (status, _, _) = try await registry.put("/v1/agent/service/register", """
            {"ID": "catalog-cut", "Name": "catalog", "Address": "127.0.0.1", "Port": \(cuttingPort)}
            """)
        XCTAssertEqual(status, 200)
        let whole = try await ScriptedHTTPServer(self, keepAlive: true)
        try await register(registry, "catalog", whole)
        let local = try await ScriptedHTTPServer(self)
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "orders", upstreams: ["catalog"], localPort: local.port)
        try await eventually("both instances discovered") {
            let clusters = try await sidecar.admin("/clusters")
            return clusters.contains("catalog-cut") && clusters.contains("catalog-\(whole.port)")
        }
        for _ in 0..<10 {
            let response = try await sidecar.upstream("catalog")
            XCTAssertEqual(response.status, 200)
            XCTAssertEqual(port(of: response.body), whole.port, "the whole response, from the instance that sent it whole")
        }
        let retries = try await sidecar.metric(#"trellis_sidecar_retries_total{upstream="catalog"}"#)
        XCTAssertGreaterThan(retries ?? 0, 0)
    }

    func testASlowHeadGets408AndAnIdleConnectionIsClosedButABusyOneStays() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let local = try await ScriptedHTTPServer(self, keepAlive: true)
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "orders", localPort: local.port,
                                                 extra: ["--request-headers-timeout", "1s", "--idle-timeout", "2s"])
        let script = pythonSocketHelpers + """
        port = int(sys.argv[1])
        request = b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n")
        data, closed = read_until_closed(s, 6)
        print("slow|%s|%s|%s" % (data.split(b"\\r\\n")[0].decode(), b"x-trellis-error: request_headers_timeout" in data, closed))
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request)
        status = response(s)
        data, closed = read_until_closed(s, 6)
        print("idle|%s|%s" % (status, closed))
        s = socket.create_connection(("127.0.0.1", port))
        ok = 0
        for _ in range(6):
            s.sendall(request)
            ok += response(s) == "HTTP/1.1 200 OK"
            time.sleep(0.5)
        print("busy|%d" % ok)
        """
        let run = try runToEnd("/usr/bin/env", ["python3", "-c", script, String(sidecar.port)])
        XCTAssertEqual(run.status, 0, run.output)
        let lines = run.output.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains("slow|HTTP/1.1 408 Request Timeout|True|True"), run.output)
        XCTAssertTrue(lines.contains("idle|HTTP/1.1 200 OK|True"), run.output)
        XCTAssertTrue(lines.contains("busy|6"), "requests every 0.5 s keep a connection with a 2 s idle timeout open: \(run.output)")
    }

    func testAnInstanceMarkedCriticalLeavesThePool() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let a = try await ScriptedHTTPServer(self, keepAlive: true)
        let b = try await ScriptedHTTPServer(self, keepAlive: true)
        try await register(registry, "users", a, ttl: true)
        try await register(registry, "users", b, ttl: true)
        let local = try await ScriptedHTTPServer(self)
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "orders", upstreams: ["users"], localPort: local.port)
        try await eventually("both instances discovered") { try await sidecar.admin("/clusters").contains("users-\(b.port)") }

        let (status, _, _) = try await registry.put("/v1/agent/check/fail/ttl-\(a.port)?note=down")
        XCTAssertEqual(status, 200)
        try await eventually(timeout: 2, "critical instance leaves at once") { try await !sidecar.admin("/clusters").contains("users-\(a.port)") }
        for _ in 0..<10 {
            let body = try await sidecar.upstream("users").body
            XCTAssertEqual(port(of: body), b.port)
        }
        // With no passing instance the sidecar says so itself.
        _ = try await registry.put("/v1/agent/check/fail/ttl-\(b.port)")
        try await eventually("no instance left") { try await sidecar.upstream("users").status == 503 }
        let answer = try await sidecar.upstream("users")
        XCTAssertEqual(answer.headers["x-trellis-error"], "no_healthy_upstream")
        XCTAssertTrue(String(decoding: answer.body, as: UTF8.self).contains("no healthy instance of users"))
    }

    func testTraceHeadersKeepTheTraceIDAndGetANewParentPerHop() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let local = try await ScriptedHTTPServer(self)
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "orders", localPort: local.port)
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let (status, _, body) = try await sidecar.get("/orders", headers: ["traceparent": incoming, "x-request-id": "req-1"])
        XCTAssertEqual(status, 200)
        let seen = ScriptedHTTPServer.echoedHeaders(body)
        let parts = try XCTUnwrap(seen["traceparent"]).split(separator: "-")
        XCTAssertEqual(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace id")
        XCTAssertNotEqual(parts[2], "00f067aa0ba902b7", "new parent id")
        XCTAssertEqual(seen["x-request-id"], "req-1")
        XCTAssertEqual(seen["x-forwarded-for"], "127.0.0.1")
        XCTAssertEqual(seen["x-forwarded-proto"], "http")

        let fresh = ScriptedHTTPServer.echoedHeaders(try await sidecar.get("/orders").body)
        XCTAssertNotNil(fresh["traceparent"].flatMap { $0.count == 55 ? $0 : nil }, "a trace starts at the first sidecar")
        XCTAssertNil(fresh["x-b3-traceid"], "a trace that starts here is propagated as W3C only")
        try await eventually("the access log carries the trace id") {
            sidecar.child.output.contains { $0.contains("\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\"") && $0.contains("\"msg\":\"access\"") }
        }
    }

    func testRateLimitAdmitsTheConfiguredRate() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let local = try await ScriptedHTTPServer(self, keepAlive: true)
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "orders", localPort: local.port, policy: """
            inbound:
              rate_limit: {requests: 50, per: 1s, burst: 10}
            """)
        // Warm the client's connections, then let the bucket fill up again.
        _ = try await sidecar.get("/")
        try await Task.sleep(for: .milliseconds(500))
        let started = Date()
        var admitted = 0
        var limited: (status: Int, headers: [String: String], body: [UInt8])?
        try await withThrowingTaskGroup(of: (Int, (Int, [String: String], [UInt8])?).self) { group in
            for _ in 0..<4 {
                group.addTask {
                    var ok = 0
                    var refused: (Int, [String: String], [UInt8])?
                    while Date().timeIntervalSince(started) < 3 {
                        let answer = try await sidecar.get("/")
                        if answer.status == 200 { ok += 1 } else if answer.status == 429 { refused = answer }
                    }
                    return (ok, refused)
                }
            }
            for try await (ok, refused) in group {
                admitted += ok
                limited = limited ?? refused
            }
        }
        let elapsed = Date().timeIntervalSince(started)
        let expected = 10 + 50 * elapsed
        XCTAssertEqual(Double(admitted), expected, accuracy: expected * 0.05, "admitted \(admitted) in \(elapsed)s")
        let refusal = try XCTUnwrap(limited)
        XCTAssertEqual(refusal.headers["retry-after"], "1")
        XCTAssertEqual(refusal.headers["x-ratelimit-limit"], "50")
        XCTAssertEqual(refusal.headers["x-ratelimit-remaining"], "0")
        XCTAssertEqual(refusal.headers["x-trellis-error"], "rate_limited")
    }

    func testPolicyChangesInTheRegistryApplyLiveAndInvalidOnesAreRejected() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let local = try await ScriptedHTTPServer(self, keepAlive: true)
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "orders", localPort: local.port)
        let first = try await sidecar.get("/").status
        XCTAssertEqual(first, 200)

        let dir = try temporaryDirectory(self)
        try "service: orders\ninbound:\n  rate_limit: {requests: 1, per: 1h}\n".write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        let apply = try ChildProcess(TrellisBinary.path, ["policy", "apply", dir + "/p.yaml", "--registry", registry.address])
        apply.process.waitUntilExit()
        XCTAssertEqual(apply.process.terminationStatus, 0)
        let applied = Date()
        try await eventually(timeout: 3, "rate limit applies live") { try await sidecar.get("/").status == 429 }
        XCTAssertLessThan(Date().timeIntervalSince(applied), 1.5)
        let config = try await sidecar.admin("/config")
        XCTAssertTrue(config.contains("registry:trellis/policies/orders"), config)

        try "inbound:\n  rate_limit: {requests: many}\n".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        let rejected = try ChildProcess(TrellisBinary.path, ["policy", "apply", dir + "/bad.yaml", "--service", "orders", "--registry", registry.address])
        rejected.process.waitUntilExit()
        XCTAssertEqual(rejected.process.terminationStatus, 1, "the CLI refuses an invalid policy")

        _ = try await registry.put("/v1/kv/trellis/policies/orders", "inbound:\n  timeouts: {request: forever}\n")
        try await eventually("the sidecar rejects an invalid policy") {
            (try await sidecar.metric("trellis_sidecar_policy_rejected_total") ?? 0) >= 1
        }
        let kept = try await sidecar.get("/").status
        XCTAssertEqual(kept, 429, "the previous policy stays whole")

        _ = try await registry.client.send("DELETE", "/v1/kv/trellis/policies/orders")
        try await eventually(timeout: 3, "back to defaults when the key goes") { try await sidecar.get("/").status == 200 }
    }

    func testSupervisesTheServiceRestartsItAndLogsItsOutput() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let script = """
        import http.server, os, sys
        print("service up, catalog at " + os.environ["UPSTREAM_CATALOG_URL"], flush=True)
        ignored = int([l for l in open("/proc/self/status") if l.startswith("SigIgn:")][0].split()[1], 16)
        print("SIGTERM ignored: %s" % bool(ignored & (1 << 14)), flush=True)
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/crash":
                    print('{"level":"error","msg":"crashing on purpose"}', flush=True)
                    os._exit(3)
                self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
            def log_message(self, *a): pass
        http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
        """
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "shop", upstreams: ["catalog"],
                                                 extra: ["--health-path", "/"], command: ["python3", "-c", script])
        try await eventually(timeout: 15, "the service started and its line was logged") {
            sidecar.child.output.contains { $0.contains("service up, catalog at http://127.0.0.1:\(sidecar.upstreamPorts["catalog"]!)") && $0.contains("\"service\":\"shop\"") }
        }
        try await eventually("service answers through the sidecar") { (try? await sidecar.get("/"))?.status == 200 }
        XCTAssertTrue(sidecar.child.output.contains { $0.contains("SIGTERM ignored: False") },
                      "the service starts with default signal dispositions, so SIGTERM stops it")
        try await eventually("registered and passing") {
            try await registry.json("/v1/health/service/shop?passing=1").arrayValue?.count == 1
        }
        _ = try? await sidecar.get("/crash")
        try await eventually(timeout: 15, "restarted after the crash") {
            sidecar.child.output.filter { $0.contains("service up") }.count == 2
        }
        XCTAssertTrue(sidecar.child.output.contains { $0.contains("\"msg\":\"crashing on purpose\"") && $0.contains("\"stream\":\"stdout\"") })
        try await eventually("answers again") { (try? await sidecar.get("/"))?.status == 200 }
        let restarts = try await sidecar.metric("trellis_sidecar_service_restarts_total")
        XCTAssertGreaterThanOrEqual(restarts ?? 0, 1)

        // SIGTERM drains: deregistered, the service stopped, the sidecar gone.
        sidecar.child.process.terminate()
        sidecar.child.process.waitUntilExit()
        let left = try await registry.json("/v1/health/service/shop").arrayValue?.count
        XCTAssertEqual(left, 0)
        let pgrep = try ChildProcess("/usr/bin/pgrep", ["-f", "service up, catalog"])
        pgrep.process.waitUntilExit()
        XCTAssertEqual(pgrep.process.terminationStatus, 1, "the service process is gone")
    }

    func testRegistersAgainWhenTheRegistryForgetsTheInstance() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let local = try await ScriptedHTTPServer(self)
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "orders", localPort: local.port,
                                                 extra: ["--tag", "v1", "--meta", "weight=3"])
        let id = "orders-\(sidecar.port)"
        try await eventually("registered") { try await registry.get("/v1/agent/service/\(id)").status == 200 }
        let service = try await registry.json("/v1/agent/service/\(id)")
        XCTAssertEqual(service["Tags"]?[0]?.stringValue, "v1")
        XCTAssertEqual(service["Meta"]?["weight"]?.stringValue, "3")
        XCTAssertEqual(service["Meta"]?["trellis_sidecar_admin_port"]?.stringValue, String(sidecar.adminPort))
        _ = try await registry.put("/v1/agent/service/deregister/\(id)")
        try await eventually(timeout: 10, "registered again") { try await registry.get("/v1/agent/service/\(id)").status == 200 }
    }

    func testBodiesStreamThroughAndNonIdempotentRequestsAreNotRetried() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let files = try await ScriptedHTTPServer(self, keepAlive: true)
        try await register(registry, "files", files)
        let local = try await ScriptedHTTPServer(self)
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "orders", upstreams: ["files"], localPort: local.port)
        try await eventually("discovered") { try await sidecar.admin("/clusters").contains("files-\(files.port)") }

        // 3 MiB: far above the 64 KiB kept for retries, so it streams.
        var body = [UInt8](repeating: 0, count: 3 << 20)
        for i in body.indices { body[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 13) }
        let dir = try temporaryDirectory(self)
        try Data(body).write(to: URL(fileURLWithPath: dir + "/body"))
        let sha = try ChildProcess("/usr/bin/sha256sum", [dir + "/body"])
        sha.process.waitUntilExit()
        let expected = try await sha.waitForLine(containing: "body").split(separator: " ")[0]
        let upload = try await sidecar.send("POST", "/upload", port: sidecar.upstreamPorts["files"], body: body)
        XCTAssertEqual(upload.status, 200)
        XCTAssertTrue(String(decoding: upload.body, as: UTF8.self).contains("bytes \(body.count) sha \(expected)"))

        try files.answer(503)
        let post = try await sidecar.send("POST", "/orders", port: sidecar.upstreamPorts["files"], body: Array("{}".utf8))
        XCTAssertEqual(post.status, 503, "the service's own answer comes through")
        XCTAssertNil(post.headers["x-trellis-error"])
        XCTAssertEqual(files.postsReceived, 2, "a POST that reached the service is not sent again")
    }

    /// A sidecar whose one upstream, `slow`, is a test server answering paths under `/slow` after 1.5 s.
    private func sidecarWithSlowUpstream(policy: String) async throws -> SidecarUnderTest {
        let registry = try await RegistryUnderTest.start(self)
        let slow = try await ScriptedHTTPServer(self, keepAlive: true)
        try await register(registry, "slow", slow)
        let local = try await ScriptedHTTPServer(self)
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "orders", upstreams: ["slow"],
                                                 localPort: local.port, policy: policy)
        try await eventually("discovered") { try await sidecar.admin("/clusters").contains("slow-\(slow.port)") }
        return sidecar
    }

    func testTimeoutsAndTheCircuitBreakerAnswerForTheUpstream() async throws {
        let sidecar = try await sidecarWithSlowUpstream(policy: """
            upstreams:
              slow:
                timeouts: {request: 500ms}
                retries: {attempts: 0}
                circuit_breaker: {max_requests: 1}
            """)
        let started = Date()
        async let timedOut = sidecar.upstream("slow", "/slow")
        try await Task.sleep(for: .milliseconds(150))
        let overflow = try await sidecar.upstream("slow", "/")
        XCTAssertEqual(overflow.status, 503)
        XCTAssertEqual(overflow.headers["x-trellis-error"], "overflow")
        let answer = try await timedOut
        XCTAssertEqual(answer.status, 504)
        XCTAssertEqual(answer.headers["x-trellis-error"], "timeout")
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.4, "answered at the timeout, not when the upstream did")
        let local503 = try await sidecar.metric(#"trellis_sidecar_local_responses_total{direction="outbound",upstream="slow",reason="overflow"}"#)
        XCTAssertEqual(local503, 1)
    }

    func testAnAttemptPastItsPerTryTimeoutIsRetriedThenAnsweredWith504() async throws {
        let sidecar = try await sidecarWithSlowUpstream(policy: """
            upstreams:
              slow:
                timeouts: {per_try: 300ms}
                retries: {attempts: 1, retry_on: [timeout]}
            """)
        let started = Date()
        let answer = try await sidecar.upstream("slow", "/slow")
        XCTAssertEqual(answer.status, 504)
        XCTAssertEqual(answer.headers["x-trellis-error"], "timeout")
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.6, "two attempts of 300 ms each")
        let retries = try await sidecar.metric(#"trellis_sidecar_retries_total{upstream="slow"}"#)
        XCTAssertEqual(retries, 1)
        let quick = try await sidecar.upstream("slow", "/")
        XCTAssertEqual(quick.status, 200, "a quick answer within the timeout")
    }

    func testACanaryRouteSendsMatchingRequestsToTheTaggedInstances() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let stable = try await ScriptedHTTPServer(self, keepAlive: true)
        let canary = try await ScriptedHTTPServer(self, keepAlive: true)
        try await register(registry, "catalog", stable, tags: ["v1"])
        try await register(registry, "catalog", canary, tags: ["v2"])
        let local = try await ScriptedHTTPServer(self)
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "orders", upstreams: ["catalog"], localPort: local.port, policy: """
            upstreams:
              catalog:
                routes:
                  - name: canary
                    match: {headers: {x-canary: "1"}}
                    split: [{weight: 0, tag: v1}, {weight: 100, tag: v2}]
            """)
        try await eventually("discovered") { try await sidecar.admin("/clusters").contains("catalog-\(canary.port)") }
        for _ in 0..<6 {
            let body = try await sidecar.upstream("catalog", "/", headers: ["x-canary": "1"]).body
            XCTAssertEqual(port(of: body), canary.port)
        }
        var seen = Set<Int>()
        for _ in 0..<4 { seen.insert(port(of: try await sidecar.upstream("catalog").body) ?? 0) }
        XCTAssertEqual(seen, [stable.port, canary.port], "other requests use every instance")
        let routed = try await sidecar.metric(#"trellis_sidecar_requests_total{direction="outbound",upstream="catalog",route="canary",code_class="2xx"}"#)
        XCTAssertEqual(routed, 6)
    }

    func testARequestThatClosesItsConnectionIsCountedOnce() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let local = try await ScriptedHTTPServer(self, keepAlive: true)
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "orders", localPort: local.port)
        let script = """
        import socket, sys
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
        s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk: break
            out += chunk
        print("answer", out.split(b"\\r\\n")[0].decode(), flush=True)
        """
        let client = try ChildProcess("/usr/bin/env", ["python3", "-c", script, String(sidecar.port)])
        let answer = try await client.waitForLine(containing: "answer")
        XCTAssertEqual(answer, "answer HTTP/1.1 200 OK")
        let series = #"trellis_sidecar_requests_total{direction="inbound",upstream="local",route="default",code_class="#
        let answered = try await sidecar.metric(series + #""2xx"}"#)
        let unanswered = try await sidecar.metric(series + #""none"}"#)
        XCTAssertEqual(answered, 1)
        XCTAssertEqual(unanswered, 0, "closing after the response is not a request left without an answer")
    }

    func testPipelinedAndMalformedInputGetAnswersAndNeverCrashTheSidecar() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let local = try await ScriptedHTTPServer(self, keepAlive: true)
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "orders", localPort: local.port)
        let script = """
        import random, socket, sys
        port = int(sys.argv[1])
        def exchange(data, read=True, timeout=5):
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            s.sendall(data)
            out = b""
            if read:
                try:
                    while True:
                        chunk = s.recv(65536)
                        if not chunk: break
                        out += chunk
                        if out.count(b"HTTP/1.1 ") >= 2 and data.count(b"GET ") >= 2 and out.endswith(b"\\n"): break
                        if data.count(b"GET ") < 2 and b"\\r\\n\\r\\n" in out and not data.startswith(b"GET"): break
                except socket.timeout:
                    pass
            s.close()
            return out
        two = exchange(b"GET /a HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET /b HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
        print("pipelined", two.count(b"HTTP/1.1 200"), two.find(b"GET") == -1, flush=True)
        bad = exchange(b"NOT HTTP AT ALL\\r\\n\\r\\n")
        print("garbage", bad.split(b"\\r\\n")[0].decode(), flush=True)
        rng = random.Random(7)
        for i in range(200):
            kind = rng.randrange(5)
            if kind == 0: data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
            elif kind == 1: data = b"GET /" + b"a" * rng.randrange(1, 100000) + b" HTTP/1.1\\r\\n\\r\\n"
            elif kind == 2: data = b"POST / HTTP/1.1\\r\\nContent-Length: 100\\r\\n\\r\\nshort"
            elif kind == 3: data = b"GET / HTTP/1.1\\r\\nTransfer-Encoding: chunked\\r\\nContent-Length: 3\\r\\n\\r\\nzz\\r\\n"
            else: data = b"GET / HTTP/1.1\\r\\n" + b"X-H: " + b"v" * rng.randrange(1, 200000) + b"\\r\\n\\r\\n"
            try:
                exchange(data, read=rng.random() < 0.3, timeout=0.2)
            except OSError:
                pass
        print("fuzzed", flush=True)
        """
        let fuzz = try ChildProcess("/usr/bin/env", ["python3", "-c", script, String(sidecar.port)])
        _ = try await fuzz.waitForLine(containing: "fuzzed", timeout: 60)
        XCTAssertEqual(fuzz.output.first { $0.hasPrefix("pipelined") }, "pipelined 2 True", "two pipelined requests, two answers in order")
        XCTAssertEqual(fuzz.output.first { $0.hasPrefix("garbage") }, "garbage HTTP/1.1 400 Bad Request")
        XCTAssertTrue(sidecar.child.process.isRunning, "the sidecar survived")
        let after = try await sidecar.get("/")
        XCTAssertEqual(after.status, 200)
    }
}

/// Message framing through the sidecar, byte for byte, against a raw upstream: chunked bodies and
/// trailers, bodies that end with the connection, HEAD, interim responses, HTTP/1.0 clients and a
/// request that could be read two ways.
final class SidecarFramingTests: XCTestCase {
    private static let upstream = #"""
    import socket, sys, threading
    listener = socket.socket(); listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0)); listener.listen(64)
    print("port", listener.getsockname()[1], flush=True)
    def read_head(conn, data):
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk: return None, b""
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        return head.decode(), rest
    def read_chunked(conn, data):
        while not data.endswith(b"0\r\n\r\n"):
            data += conn.recv(65536)
        return data
    def serve(conn):
        data = b""
        while True:
            head, data = read_head(conn, data)
            if head is None: return
            line = head.split("\r\n")[0]
            print("request", line, "|", ";".join(head.split("\r\n")[1:]), flush=True)
            method, path = line.split(" ")[:2]
            if path == "/chunked":
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n")
            elif path == "/close":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
                conn.close(); return
            elif path == "/head":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            elif path == "/interim":
                conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            elif path == "/echo":
                body = read_chunked(conn, data); data = b""
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    """#

    private static let client = #"""
    import socket, sys
    port = int(sys.argv[1])
    def connect():
        return socket.create_connection(("127.0.0.1", port), timeout=5)
    def until_closed(s):
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk: return out
            out += chunk
    def until(s, marker, out=b""):
        while marker not in out:
            chunk = s.recv(65536)
            if not chunk: break
            out += chunk
        return out
    def show(name, data):
        print(name, repr(data.replace(b"\r\n", b"|").decode()), flush=True)
    s = connect()
    s.sendall(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
    show("chunked11", until(s, b"0\r\nX-Sum: 11\r\n\r\n"))
    s.sendall(b"GET /interim HTTP/1.1\r\nHost: x\r\n\r\n")
    show("interim", until(s, b"ok"))
    s.sendall(b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n")
    show("head", until(s, b"\r\n\r\n"))
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    s.sendall(b"2\r\nde\r\n0\r\n\r\n")
    show("echo", until(s, b"0\r\n\r\n"))
    s.close()
    s = connect(); s.sendall(b"GET /chunked HTTP/1.0\r\n\r\n"); show("chunked10", until_closed(s))
    s = connect(); s.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n"); show("close", until_closed(s))
    s = connect(); s.sendall(b"POST /smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /inner HTTP/1.1\r\n\r\n")
    show("smuggle", until_closed(s))
    print("done", flush=True)
    """#

    private func answer(_ client: ChildProcess, _ name: String) -> String {
        (client.output.first { $0.hasPrefix(name + " ") } ?? "").dropFirst(name.count + 1).trimmingCharacters(in: CharacterSet(charactersIn: "'"))
    }

    func testMessagesKeepTheirFramingThroughTheSidecar() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let upstream = try ChildProcess("/usr/bin/env", ["python3", "-c", Self.upstream])
        addTeardownBlock { upstream.kill9() }
        let port = try await upstream.waitForLine(containing: "port").split(separator: " ")[1]
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "edge", localPort: Int(port)!)
        let client = try ChildProcess("/usr/bin/env", ["python3", "-c", Self.client, String(sidecar.port)])
        _ = try await client.waitForLine(containing: "done", timeout: 30)

        // A chunked body goes through as it came, chunk extension and trailer included.
        XCTAssertTrue(answer(client, "chunked11").hasSuffix("|Transfer-Encoding: chunked||5|hello|6;x=1| world|0|X-Sum: 11||"), answer(client, "chunked11"))
        // The interim 103 stays with the sidecar; the final answer comes on the same connection.
        let interim = answer(client, "interim")
        XCTAssertTrue(interim.hasPrefix("HTTP/1.1 200 OK|") && interim.hasSuffix("||ok") && !interim.contains("103"), interim)
        // HEAD: a length, no body, and the connection goes on.
        XCTAssertTrue(answer(client, "head").contains("Content-Length: 100|"), answer(client, "head"))
        // A chunked request body reaches the upstream as sent.
        XCTAssertTrue(answer(client, "echo").hasSuffix("||3|abc|2|de|0||"), answer(client, "echo"))
        XCTAssertTrue(upstream.output.contains { $0.hasPrefix("request POST /echo HTTP/1.1") && $0.contains("Transfer-Encoding: chunked") })
        // An HTTP/1.0 client cannot read chunked: it gets the data and the end of the connection.
        let old = answer(client, "chunked10")
        XCTAssertTrue(old.hasPrefix("HTTP/1.0 200 OK|") && old.contains("connection: close|") && old.hasSuffix("||hello world"), old)
        XCTAssertFalse(old.contains("Transfer-Encoding"), old)
        // A body without a length ends with the connection, on both sides.
        XCTAssertTrue(answer(client, "close").hasSuffix("connection: close||until the end"), answer(client, "close"))
        // Content-Length with Transfer-Encoding could be read two ways: refused, nothing forwarded.
        XCTAssertTrue(answer(client, "smuggle").hasPrefix("HTTP/1.1 400 Bad Request|"), answer(client, "smuggle"))
        XCTAssertFalse(upstream.output.contains { $0.contains("/smuggle") || $0.contains("/inner") })
        let requests = try await sidecar.metric(#"trellis_sidecar_requests_total{direction="inbound",upstream="local",route="default",code_class="2xx"}"#)
        XCTAssertEqual(requests, 6)
    }
}
