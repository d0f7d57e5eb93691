import ConsulClient
import Foundation
import TrellisCore
import TrellisHTTP
import XCTest

/// `trellis up` on the shipped shop topology: the curl walkthrough over HTTP, a catalog replica
/// killed mid-traffic, one trace across users, catalog and orders in the logs, the dashboards'
/// queries answered by a real Prometheus, and nothing left running after the stop.
final class ShopEndToEndTests: XCTestCase {
    private static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `trellis up` of the shipped shop in `<dir>/shop`, on free ports, stopped with the test; answers
    /// once every instance passes.
    static func startShop(in dir: String, _ test: XCTestCase) async throws -> (up: ChildProcess, data: String) {
        let data = dir + "/shop"
        let up = try ChildProcess(TrellisBinary.path, [
            "up", root.appendingPathComponent("examples/shop/topology.yaml").path,
            "--data-dir", data, "--registry-port", "0", "--collector-port", "0",
        ])
        test.addTeardownBlock { up.kill9(); killLeftovers(under: data) }
        _ = try await up.waitForLine(containing: "all 7 instances passing", timeout: 120)
        return (up, data)
    }

    func testTrellisUpRunsTheShopEndToEnd() async throws {
        let dir = try temporaryDirectory(self)
        let (up, data) = try await Self.startShop(in: dir, self)
        let endpoints = try Self.readEndpoints(data + "/endpoints.env")
        let users = ConsulClient(address: try XCTUnwrap(endpoints["USERS_URL"]))
        let catalog = ConsulClient(address: try XCTUnwrap(endpoints["CATALOG_URL"]))
        let orders = ConsulClient(address: try XCTUnwrap(endpoints["ORDERS_URL"]))
        let notifications = ConsulClient(address: try XCTUnwrap(endpoints["NOTIFICATIONS_URL"]))
        let collector = ConsulClient(address: try XCTUnwrap(endpoints["TRELLIS_COLLECTOR_ADDR"]))
        // With Consul's port 8600 free, the registry of `trellis up` answers DNS there.
        if let dns = endpoints["TRELLIS_DNS_ADDR"], FileManager.default.isExecutableFile(atPath: "/usr/bin/dig") {
            let port = String(dns.split(separator: ":").last ?? "")
            let srv = try runToEnd("/usr/bin/dig", ["@127.0.0.1", "-p", port, "+short", "catalog.service.consul", "SRV"]).output
            let catalogPort = try XCTUnwrap(endpoints["CATALOG_URL"]?.split(separator: ":").last)
            XCTAssertTrue(srv.contains(" \(catalogPort) "), "the catalog's sidecar port is in DNS: \(srv)")
        }

        // The registry runs default-deny: each sidecar's token holds its own service's rights only.
        let registry = try XCTUnwrap(endpoints["TRELLIS_ADDR"])
        let managementFile = try XCTUnwrap(endpoints["CONSUL_HTTP_TOKEN_FILE"])
        let ordersToken = try String(contentsOfFile: data + "/tokens/sidecar-orders.token", encoding: .utf8)
        let asOrders = ConsulClient(address: registry, token: ordersToken, environment: [:])
        let rewrite = try await asOrders.send("PUT", "/v1/kv/trellis/policies/catalog", body: Array("retries: {}".utf8))
        XCTAssertEqual(rewrite.status, 403, "one service's token cannot write another's policy")
        let deregister = try await asOrders.send("PUT", "/v1/agent/service/deregister/catalog-1")
        XCTAssertEqual(deregister.status, 403, "nor deregister it")
        let own = try await asOrders.send("GET", "/v1/kv/trellis/policies/orders")
        XCTAssertEqual(own.status, 200, "but it reads its own policy")
        let anonymous = try await ConsulClient(address: registry, environment: [:]).send("GET", "/v1/catalog/services")
        XCTAssertEqual(String(decoding: anonymous.body, as: UTF8.self), "{}", "anonymous requests see nothing")
        let management = try String(contentsOfFile: managementFile, encoding: .utf8)
        let services = try await ConsulClient(address: registry, token: management, environment: [:]).send("GET", "/v1/catalog/services")
        XCTAssertTrue(String(decoding: services.body, as: UTF8.self).contains("orders"), "the endpoints file names the management token")

        // The walkthrough of examples/shop/README.md.
        let credentials = Array(#"{"username":"ann","password":"correct horse"}"#.utf8)
        let registered = try await users.send("POST", "/users", body: credentials).status
        XCTAssertEqual(registered, 201)
        let again = try await users.send("POST", "/users", body: credentials).status
        XCTAssertEqual(again, 409, "a taken username is refused")
        let session = try await Self.json(users.send("POST", "/login", body: credentials), expect: 200)
        let token = try XCTUnwrap(session["token"]?.stringValue)
        let auth = ["Authorization": "Bearer \(token)"]
        let tea = try await Self.json(catalog.send("POST", "/products", body: Array(#"{"name":"Tea","price_cents":450,"stock":1000}"#.utf8)), expect: 201)
        let teaID = try XCTUnwrap(tea["id"]?.intValue)
        let rare = try await Self.json(catalog.send("POST", "/products", body: Array(#"{"name":"Saffron","price_cents":990,"stock":1}"#.utf8)), expect: 201)
        let rareID = try XCTUnwrap(rare["id"]?.intValue)

        let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
        let order = try await Self.json(orders.send("POST", "/orders", body: Array(#"{"product_id":\#(teaID),"quantity":2}"#.utf8),
                                                    headers: auth.merging(["traceparent": "00-\(traceID)-00f067aa0ba902b7-01"]) { $1 }), expect: 201)
        let orderID = try XCTUnwrap(order["id"]?.stringValue)
        XCTAssertEqual(order["total_cents"]?.intValue, 900)
        let details = try await Self.json(orders.send("GET", "/orders/\(orderID)"), expect: 200)
        XCTAssertEqual(details["product"]?["stock"]?.intValue, 998, "the order reserved two teas")
        let notes = try await Self.json(notifications.send("GET", "/notifications?user_id=\(session["user"]?["id"]?.intValue ?? 0)"), expect: 200)
        XCTAssertEqual(notes.arrayValue?.map { $0["id"]?.stringValue }, ["order-\(orderID)"])
        let unauthenticated = try await orders.send("POST", "/orders", body: Array(#"{"product_id":\#(teaID),"quantity":1}"#.utf8)).status
        XCTAssertEqual(unauthenticated, 401, "an order needs a logged-in user")
        let tooMany = try await orders.send("POST", "/orders", body: Array(#"{"product_id":\#(rareID),"quantity":2}"#.utf8), headers: auth).status
        XCTAssertEqual(tooMany, 409, "stock is checked")
        let unknown = try await orders.send("POST", "/orders", body: Array(#"{"product_id":999999,"quantity":1}"#.utf8), headers: auth).status
        XCTAssertEqual(unknown, 422, "the product must exist")

        // Orders keep succeeding while one catalog replica's process is killed (its sidecar restarts it).
        let victim = try XCTUnwrap(Self.processes(under: data).first { $0.command.split(separator: " ").first?.hasSuffix("/shop-catalog") == true }, "a catalog process")
        let traffic = Task {
            var statuses: [Int] = []
            for _ in 0..<60 {
                let status = (try? await orders.send("POST", "/orders", body: Array(#"{"product_id":\#(teaID),"quantity":1}"#.utf8),
                                                     headers: auth, timeout: 15).status) ?? 0
                statuses.append(status)
                try? await Task.sleep(for: .milliseconds(40))
            }
            return statuses
        }
        try await Task.sleep(for: .milliseconds(600))
        kill(victim.pid, SIGKILL)
        let statuses = await traffic.value
        XCTAssertEqual(statuses.filter { $0 != 201 }, [], "no order failed while a catalog replica was down: \(statuses)")
        _ = try await up.waitForLine(containing: "restarts 1", timeout: 30)
        let restarted = up.output.filter { $0.hasPrefix("catalog-") && $0.contains("restarts 1") }
        XCTAssertFalse(restarted.isEmpty, "the status output shows the catalog restart: \(up.output.suffix(10))")

        // One trace id in the logs of every service the order went through.
        for service in ["users", "catalog", "orders"] {
            try await eventually(timeout: 20, "\(service) logged the request of trace \(traceID)") {
                let lines = await Self.logLines(collector, #"{service="\#(service)"} |= "\#(traceID)""#)
                return lines.contains { $0.contains(#""msg":"request""#) }
            }
        }

        // A real Prometheus scraping the collector evaluates every dashboard query and loads the alerts.
        let prometheus = try await Self.startPrometheus(dir: dir, collector: endpoints["TRELLIS_COLLECTOR_ADDR"]!, test: self)
        // The gateway's dashboard has data where a gateway runs (GatewayTests).
        let queries = try Self.dashboardQueries { $0 != "gateway.json" }
        XCTAssertGreaterThan(queries.prometheus.count, 40)
        var empty: [String] = []
        for _ in 0..<60 {
            empty = []
            for query in queries.prometheus where await Self.series(prometheus, query).isEmpty { empty.append(query) }
            if empty.isEmpty { break }
            try await Task.sleep(for: .seconds(1))
        }
        XCTAssertEqual(empty, [], "dashboard queries without data")
        for query in queries.loki {
            let filled = query.replacingOccurrences(of: "$service", with: "orders").replacingOccurrences(of: "$instance", with: ".*")
                .replacingOccurrences(of: "$trace_id", with: traceID)
            let lines = await Self.logLines(collector, filled)
            XCTAssertFalse(lines.isEmpty, "the logs panel query \(filled) finds the trace")
        }
        let rules = try await Self.json(prometheus.send("GET", "/api/v1/rules"), expect: 200)
        let loaded = (rules["data"]?["groups"]?.arrayValue ?? []).flatMap { $0["rules"]?.arrayValue ?? [] }
        XCTAssertEqual(loaded.count, 11, "dashboards/alerts.yml loads into Prometheus")
        XCTAssertEqual(loaded.filter { $0["health"]?.stringValue == "err" }.map { $0["name"]?.stringValue }, [])

        // SIGTERM stops everything in order and leaves no process behind.
        up.process.terminate()
        try await eventually(timeout: 60, "trellis up exits") { !up.process.isRunning }
        XCTAssertEqual(up.process.terminationStatus, 0)
        XCTAssertTrue(up.output.contains("stopped"), "\(up.output.suffix(5))")
        XCTAssertEqual(Self.processes(under: data).map(\.command), [], "processes left behind")
    }

    /// Bad topologies are refused, naming the problem, before anything starts.
    func testTrellisUpRefusesABadTopologyBeforeStartingAnything() async throws {
        let dir = try temporaryDirectory(self)
        let taken = try await ScriptedHTTPServer(self)
        let cases: [(String, String)] = [
            ("services:\n  - {name: web, command: [sh], upstreams: [db]}\n", "services.web.upstreams: unknown service \"db\""),
            ("services:\n  - {name: web, command: [sh]}\n  - {name: web, command: [sh]}\n", "the name \"web\" is used twice"),
            ("services:\n  - {name: web, command: [no-such-shop-service]}\n", "command not found or not executable: no-such-shop-service"),
            ("registry: {port: \(taken.port)}\nservices:\n  - {name: web, command: [sh]}\n", "registry: port \(taken.port) is in use"),
        ]
        for (index, (yaml, message)) in cases.enumerated() {
            let file = "\(dir)/bad-\(index).yaml"
            try yaml.write(toFile: file, atomically: true, encoding: .utf8)
            let run = Process()
            run.executableURL = URL(fileURLWithPath: TrellisBinary.path)
            run.arguments = ["up", file, "--data-dir", "\(dir)/data-\(index)"]
            let errors = Pipe()
            run.standardError = errors
            run.standardOutput = FileHandle.nullDevice
            try run.run()
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            run.waitUntilExit()
            XCTAssertNotEqual(run.terminationStatus, 0, yaml)
            XCTAssertTrue(text.contains(message), "expected \"\(message)\" in: \(text)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/data-\(index)/registry"), "nothing started for: \(yaml)")
        }
    }

    /// A hang-up (the terminal closed) stops the fleet like Ctrl-C, leaving nothing behind.
    func testTrellisUpStopsTheFleetOnHangUp() async throws {
        let dir = try temporaryDirectory(self)
        let data = dir + "/fleet"
        try "services:\n  - {name: catalog, command: [shop-catalog], health_path: /health}\n"
            .write(toFile: dir + "/topology.yaml", atomically: true, encoding: .utf8)
        let up = try ChildProcess(TrellisBinary.path, ["up", dir + "/topology.yaml", "--data-dir", data, "--registry-port", "0", "--collector-port", "0"])
        addTeardownBlock { up.kill9(); Self.killLeftovers(under: data) }
        _ = try await up.waitForLine(containing: "all 1 instances passing", timeout: 60)
        kill(up.process.processIdentifier, SIGHUP)
        _ = try await up.waitForLine(containing: "stopped", timeout: 60)
        up.process.waitUntilExit()
        XCTAssertEqual(up.process.terminationStatus, 0)
        XCTAssertEqual(Self.processes(under: data).map(\.command), [], "processes left behind")
    }

    func testAlertRulesPassPromtool() throws {
        let (status, text) = try runToEnd("/usr/bin/promtool", ["check", "rules", Self.root.appendingPathComponent("dashboards/alerts.yml").path])
        XCTAssertEqual(status, 0, text)
        XCTAssertTrue(text.contains("SUCCESS: 11 rules found"), text)
    }

    // MARK: helpers

    private static func json(_ answer: (status: Int, headers: [String: String], body: [UInt8]), expect status: Int,
                             file: StaticString = #filePath, line: UInt = #line) throws -> JSON {
        XCTAssertEqual(answer.status, status, String(decoding: answer.body, as: UTF8.self), file: file, line: line)
        return try JSON.parse(answer.body)
    }

    private static func readEndpoints(_ path: String) throws -> [String: String] {
        var values: [String: String] = [:]
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            values[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return values
    }

    /// Processes working in `directory` (every process of the fleet runs in its data directory).
    static func processes(under directory: String) -> [(pid: Int32, command: String)] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> (Int32, String)? in
            guard let pid = Int32(entry), let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(entry)/cwd"),
                  cwd.hasPrefix(directory), let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            return (pid, String(decoding: raw.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self))
        }
    }

    static func killLeftovers(under directory: String) {
        for process in processes(under: directory) { kill(process.pid, SIGKILL) }
    }

    private static func logLines(_ collector: ConsulClient, _ query: String) async -> [String] {
        let escaped = query.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? query
        guard let (status, _, body) = try? await collector.send("GET", "/loki/api/v1/query_range?query=\(escaped)&limit=1000&since=1h"),
              status == 200, let json = try? JSON.parse(body) else { return [] }
        return (json["data"]?["result"]?.arrayValue ?? []).flatMap { stream in
            (stream["values"]?.arrayValue ?? []).compactMap { $0[1]?.stringValue }
        }
    }

    static func series(_ prometheus: ConsulClient, _ query: String) async -> [JSON] {
        let escaped = query.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? query
        guard let (status, _, body) = try? await prometheus.send("GET", "/api/v1/query?query=\(escaped)"), status == 200,
              let json = try? JSON.parse(body) else { return [] }
        return json["data"]?["result"]?.arrayValue ?? []
    }

    /// Every query of dashboards/*.json with its variables filled in (the orders service, all its
    /// instances, a one-minute rate window), by data source type.
    /// The queries of the dashboards `include` accepts (by file name).
    static func dashboardQueries(_ include: (String) -> Bool) throws -> (prometheus: [String], loki: [String]) {
        let directory = root.appendingPathComponent("dashboards")
        var prometheus: [String] = [], loki: [String] = []
        for file in try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() where file.hasSuffix(".json") && include(file) {
            let dashboard = try JSON.parse(Array(try Data(contentsOf: directory.appendingPathComponent(file))))
            for panel in dashboard["panels"]?.arrayValue ?? [] {
                for target in panel["targets"]?.arrayValue ?? [] {
                    guard let expr = target["expr"]?.stringValue else { continue }
                    let type = target["datasource"]?["type"]?.stringValue ?? panel["datasource"]?["type"]?.stringValue
                    if type == "loki" { loki.append(expr); continue }
                    prometheus.append(expr.replacingOccurrences(of: "$__rate_interval", with: "1m")
                        .replacingOccurrences(of: "$service", with: "orders").replacingOccurrences(of: "$instance", with: ".*"))
                }
            }
        }
        return (prometheus, loki)
    }

    /// Debian's Prometheus scraping the collector every second, with dashboards/alerts.yml loaded.
    static func startPrometheus(dir: String, collector: String, test: XCTestCase) async throws -> ConsulClient {
        let port = try freeLoopbackPort()
        let alerts = root.appendingPathComponent("dashboards/alerts.yml").path
        try """
            global: {scrape_interval: 1s, evaluation_interval: 1s}
            rule_files: ["\(alerts)"]
            scrape_configs:
              - job_name: trellis
                honor_labels: true
                static_configs: [{targets: ["\(collector)"]}]
            """.write(toFile: dir + "/prometheus.yml", atomically: true, encoding: .utf8)
        let prometheus = try ChildProcess("/usr/bin/prometheus", [
            "--config.file=\(dir)/prometheus.yml", "--storage.tsdb.path=\(dir)/prometheus", "--web.listen-address=127.0.0.1:\(port)",
            "--log.level=warn",
        ])
        test.addTeardownBlock { prometheus.kill9() }
        let client = ConsulClient(address: "127.0.0.1:\(port)")
        try await eventually(timeout: 60, "Prometheus is ready") {
            guard prometheus.process.isRunning else { throw ProcessNeverPrinted(marker: "prometheus keeps running", output: prometheus.output) }
            return (try? await client.send("GET", "/-/ready").status) == 200
        }
        return client
    }
}
