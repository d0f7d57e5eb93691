import ConsulClient
import Foundation
import TrellisCore
import TrellisHTTP
import XCTest

/// A real `trellis collector` on a free loopback port; restarts keep the port and the data dir.
final class CollectorUnderTest: @unchecked Sendable {
    let dataDir: String
    let arguments: [String]
    private(set) var child: ChildProcess?
    private(set) var port = 0
    var address: String { "127.0.0.1:\(port)" }
    var client: ConsulClient { ConsulClient(address: address) }

    init(_ test: XCTestCase, registry: RegistryUnderTest, config: String = "", extra: [String] = []) async throws {
        let dir = try temporaryDirectory(test)
        dataDir = dir + "/data"
        try config.write(toFile: dir + "/collector.yaml", atomically: true, encoding: .utf8)
        arguments = ["collector", "--data-dir", dataDir, "--registry", registry.address, "--config", dir + "/collector.yaml",
                     "--log-level", "warning"] + extra
        try await start(port: 0)
        test.addTeardownBlock { [self] in child?.kill9() }
    }

    func start(port: Int) async throws {
        let child = try ChildProcess(TrellisBinary.path, arguments + ["--http-addr", "127.0.0.1:\(port)"])
        self.child = child
        let line = try await child.waitForLine(containing: "collector listening on http://")
        let url = line.split(separator: " ").first { $0.hasPrefix("http://") }!
        self.port = Int(url.split(separator: ":").last!)!
    }

    func crashAndRestart() async throws {
        child?.kill9()
        try await start(port: port)
    }

    func metricsText() async throws -> String {
        let (status, _, body) = try await client.send("GET", "/metrics")
        XCTAssertEqual(status, 200)
        return String(decoding: body, as: UTF8.self)
    }

    func pushJSON(_ body: String) async throws -> (status: Int, body: String) {
        let answer = try await client.send("POST", "/loki/api/v1/push", body: Array(body.utf8), headers: ["Content-Type": "application/json"])
        return (answer.status, String(decoding: answer.body, as: UTF8.self))
    }

    /// The lines `query_range` returns for `query`, oldest first.
    func lines(_ query: String) async throws -> [String] {
        let escaped = query.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let (status, _, body) = try await client.send("GET", "/loki/api/v1/query_range?direction=forward&limit=100000&since=1h&query=\(escaped)")
        XCTAssertEqual(status, 200, "query_range: \(String(decoding: body, as: UTF8.self))")
        var found: [(Int64, String)] = []
        for stream in try JSON.parse(body)["data"]?["result"]?.arrayValue ?? [] {
            for value in stream["values"]?.arrayValue ?? [] {
                found.append((Int64(value[0]!.stringValue!)!, value[1]!.stringValue!))
            }
        }
        return found.sorted { $0.0 < $1.0 }.map(\.1)
    }
}

/// A Loki stand-in (python3): decodes snappy protobuf pushes and appends every line, with its
/// stream labels, to a file; answers 503 while a `fail` file exists.
final class FakeLoki: @unchecked Sendable {
    let port: Int
    let directory: String
    private let child: ChildProcess

    init(_ test: XCTestCase, failing: Bool) async throws {
        directory = try temporaryDirectory(test)
        if failing { _ = FileManager.default.createFile(atPath: directory + "/fail", contents: nil) }
        let script = """
        import http.server, json, os, snappy, sys
        d = sys.argv[1]
        def varint(b, i):
            r = s = 0
            while True:
                c = b[i]; i += 1; r |= (c & 0x7f) << s; s += 7
                if c < 0x80: return r, i
        def fields(b):
            i = 0
            while i < len(b):
                k, i = varint(b, i)
                if k & 7 == 0: v, i = varint(b, i)
                else:
                    n, i = varint(b, i); v = b[i:i + n]; i += n
                yield k >> 3, v
        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if os.path.exists(d + "/fail"):
                    self.send_response(503); self.send_header("Content-Length", "0"); self.end_headers(); return
                out = []
                for f, stream in fields(snappy.uncompress(body)):
                    labels = ""; entries = []
                    for g, v in fields(stream):
                        if g == 1: labels = v.decode()
                        if g == 2: entries.append(dict(fields(v)).get(2, b"").decode())
                    out += [json.dumps({"labels": labels, "line": e, "tenant": self.headers.get("X-Scope-OrgID")}) for e in entries]
                with open(d + "/received.jsonl", "a") as f:
                    f.write("".join(x + "\\n" for x in out))
                self.send_response(204); self.end_headers()
            def log_message(self, *a): pass
        s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        print("port %d" % s.server_address[1], flush=True)
        s.serve_forever()
        """
        // Debian's python3, where python3-snappy is installed.
        let process = try ChildProcess("/usr/bin/python3", ["-c", script, directory])
        child = process
        test.addTeardownBlock { process.kill9() }
        port = Int(try await process.waitForLine(containing: "port ").split(separator: " ")[1])!
    }

    func recover() { try? FileManager.default.removeItem(atPath: directory + "/fail") }

    /// Received lines by stream label text, in arrival order.
    var received: [String: [String]] {
        guard let text = try? String(contentsOfFile: directory + "/received.jsonl", encoding: .utf8) else { return [:] }
        var streams: [String: [String]] = [:]
        for line in text.split(separator: "\n") {
            guard let json = try? JSON.parse(String(line)), let labels = json["labels"]?.stringValue, let entry = json["line"]?.stringValue else { continue }
            streams[labels, default: []].append(entry)
        }
        return streams
    }
}

/// A python3 HTTP server that answers every GET with the given exposition text.
func metricsServer(_ test: XCTestCase, exposition: String) async throws -> Int {
    let script = """
    import http.server, sys
    body = sys.argv[1].encode()
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass
    s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    print("port %d" % s.server_address[1], flush=True)
    s.serve_forever()
    """
    let child = try ChildProcess("/usr/bin/env", ["python3", "-c", script, exposition])
    test.addTeardownBlock { child.kill9() }
    return Int(try await child.waitForLine(containing: "port ").split(separator: " ")[1])!
}

/// One JSON push body: `count` lines `"<prefix>-<n>"` for each stream.
func pushBody(streams: [String], prefix: String, range: Range<Int>) -> String {
    let now = Int64(Date().timeIntervalSince1970 * 1e9)
    let parts = streams.map { stream in
        let values = range.map { "[\"\(now + Int64($0))\",\"\(prefix)-\(stream)-\($0)\"]" }.joined(separator: ",")
        return "{\"stream\":{\"job\":\"it\",\"stream\":\"\(stream)\"},\"values\":[\(values)]}"
    }
    return "{\"streams\":[\(parts.joined(separator: ","))]}"
}

final class CollectorIntegrationTests: XCTestCase {
    private let fastScrape = "scrape:\n  interval: 300ms\n  timeout: 2s\n"

    /// Targets come from the registry (and config), appear and vanish with registrations; a dead
    /// target reports `up 0` without holding up the others; the output passes `promtool check metrics`.
    func testScrapesWhatTheRegistryListsAndPassesPromtool() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let metricsPort = try await metricsServer(self, exposition: """
            # HELP shop_orders_total Orders taken.
            # TYPE shop_orders_total counter
            shop_orders_total{kind="book",instance="inner"} 7
            """)
        let deadPort = try freeLoopbackPort()
        let collector = try await CollectorUnderTest(self, registry: registry, config: fastScrape + """
              static_targets:
                - url: http://127.0.0.1:\(deadPort)/metrics
                  job: dead
            """)
        _ = try await registry.put("/v1/agent/service/register", """
            {"Name": "shop", "ID": "shop-1", "Address": "127.0.0.1", "Port": \(metricsPort), "Meta": {"metrics_path": "/stats"}}
            """)
        let expected = #"shop_orders_total{kind="book",exported_instance="inner",job="shop",instance="shop-1",service="shop"} 7"#
        try await eventually(timeout: 15, "the registered service is scraped") {
            let text = try await collector.metricsText()
            return text.contains(expected) && text.contains(#"up{job="dead",instance="127.0.0.1:\#(deadPort)"} 0"#)
                && text.contains(#"up{job="trellis-registry""#)
        }
        let text = try await collector.metricsText()
        XCTAssertTrue(text.contains("# TYPE shop_orders_total counter"))
        XCTAssertTrue(text.contains(#"scrape_samples_scraped{job="shop",instance="shop-1",service="shop"} 1"#))
        let (_, _, federated) = try await collector.client.send("GET", "/federate?match%5B%5D=%7Bservice%3D%22shop%22%7D")
        let federatedText = String(decoding: federated, as: UTF8.self)
        XCTAssertTrue(text.contains(expected + "\n"), "/metrics writes no timestamps")
        // As Prometheus' /federate: each sample carries the time of its scrape (the UI computes rates from them).
        let federatedLine = try XCTUnwrap(federatedText.split(separator: "\n").first { $0.hasPrefix(expected + " ") }, federatedText)
        let scrapedAt = try XCTUnwrap(Int64(federatedLine.split(separator: " ").last ?? ""), String(federatedLine))
        XCTAssertLessThan(abs(scrapedAt - Int64(Date().timeIntervalSince1970 * 1000)), 60_000, String(federatedLine))
        XCTAssertFalse(federatedText.contains("trellis_registry"), federatedText)
        let (badStatus, _, _) = try await collector.client.send("GET", "/federate?match%5B%5D=%7B")
        XCTAssertEqual(badStatus, 400)

        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool"), "promtool is missing (make test installs prometheus)")
        do {
            let file = try temporaryDirectory(self) + "/metrics.txt"
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            let check = Process()
            check.executableURL = URL(fileURLWithPath: "/bin/sh")
            check.arguments = ["-c", "promtool check metrics < \(file) 2>&1 | grep -v 'counter metrics should have \"_total\" suffix\\|no help text\\|non-histogram and non-summary metrics should not have'"]
            let pipe = Pipe()
            check.standardOutput = pipe
            try check.run()
            check.waitUntilExit()
            let problems = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            XCTAssertEqual(problems.trimmingCharacters(in: .whitespacesAndNewlines), "", "promtool: \(problems)")
        }

        _ = try await registry.put("/v1/agent/service/deregister/shop-1")
        try await eventually(timeout: 10, "a deregistered target vanishes") {
            !(try await collector.metricsText()).contains("shop_orders_total{")
        }
    }

    /// A sidecar is found through its registration: its metrics are scraped and the supervised
    /// service's output arrives as log lines that `trellis logs` prints.
    func testSidecarMetricsAndServiceLogsReachTheCollector() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let collector = try await CollectorUnderTest(self, registry: registry, config: fastScrape)
        let script = """
        import http.server, os, json
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                print(json.dumps({"level": "info", "msg": "served", "path": self.path, "trace_id": "feedface"}), flush=True)
                self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
            def log_message(self, *a): pass
        print("echo service starting", flush=True)
        http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
        """
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "echo", command: ["/usr/bin/env", "python3", "-c", script])
        try await eventually(timeout: 15, "the sidecar's metrics are scraped") {
            (try await collector.metricsText()).contains(#"trellis_sidecar_service_up{job="trellis-sidecar",instance="echo-\#(sidecar.port)",service="echo"} 1"#)
        }
        let proxied = ConsulClient(address: "127.0.0.1:\(sidecar.port)")
        try await eventually(timeout: 10, "the service answers through its sidecar") { (try? await proxied.send("GET", "/hello"))?.status == 200 }
        try await eventually(timeout: 15, "service output arrives as log lines") {
            let lines = try await collector.lines(#"{service="echo"} |= "served""#)
            return lines.contains { $0.contains("\"path\": \"/hello\"") || $0.contains("\"path\":\"/hello\"") }
        }
        let withTrace = try await collector.client.send("GET", "/loki/api/v1/query_range?query=%7Bservice%3D%22echo%22%7D%20%7C%3D%20%22served%22&since=1h")
        XCTAssertTrue(String(decoding: withTrace.body, as: UTF8.self).contains(#""trace_id":"feedface""#), "trace_id is kept as structured metadata")
        let logs = try ChildProcess(TrellisBinary.path, ["logs", "echo", "--collector", collector.address, "--since", "5m"])
        logs.process.waitUntilExit()
        XCTAssertEqual(logs.process.terminationStatus, 0)
        XCTAssertTrue(logs.output.contains { $0.contains("echo service starting") }, "\(logs.output)")
    }

    /// A real Prometheus scraping the collector sees the fleet's samples.
    func testPrometheusScrapesTheCollector() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/prometheus") else {
            throw XCTSkip("prometheus is not installed (make test installs it)")
        }
        let registry = try await RegistryUnderTest.start(self)
        let collector = try await CollectorUnderTest(self, registry: registry, config: fastScrape)
        let dir = try temporaryDirectory(self)
        try """
            global: {scrape_interval: 1s}
            scrape_configs:
              - job_name: trellis
                honor_labels: true
                static_configs: [{targets: ["\(collector.address)"]}]
            """.write(toFile: dir + "/prometheus.yml", atomically: true, encoding: .utf8)
        let port = try freeLoopbackPort()
        let prometheus = try ChildProcess("/usr/bin/prometheus", [
            "--config.file=\(dir)/prometheus.yml", "--storage.tsdb.path=\(dir)/tsdb", "--web.listen-address=127.0.0.1:\(port)",
            "--log.level=error",
        ])
        addTeardownBlock { prometheus.kill9() }
        let api = ConsulClient(address: "127.0.0.1:\(port)")
        try await eventually(timeout: 60, "Prometheus has the registry's series through the collector") {
            guard let (status, _, body) = try? await api.send("GET", "/api/v1/query?query=trellis_registry_checks%7Bjob%3D%22trellis-registry%22%7D"),
                  status == 200, let json = try? JSON.parse(body) else { return false }
            return !(json["data"]?["result"]?.arrayValue ?? []).isEmpty
        }
        let (_, _, targets) = try await api.send("GET", "/api/v1/targets")
        XCTAssertTrue(String(decoding: targets, as: UTF8.self).contains("\"health\":\"up\""))
    }

    /// Loki answers 503 for a while: every line still arrives exactly once, in order per stream.
    func testLokiOutageLosesNothingAndDuplicatesNothing() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let loki = try await FakeLoki(self, failing: true)
        let collector = try await CollectorUnderTest(self, registry: registry,
                                                     config: "loki:\n  tenant: shop\n  batch_bytes: 20000\n  batch_wait: 50ms\n",
                                                     extra: ["--loki-url", "http://127.0.0.1:\(loki.port)"])
        let streams = ["a", "b", "c"]
        for batch in 0..<10 {
            let answer = try await collector.pushJSON(pushBody(streams: streams, prefix: "outage", range: batch * 50..<(batch + 1) * 50))
            XCTAssertEqual(answer.status, 204, answer.body)
        }
        try await eventually(timeout: 10, "pushes to Loki fail and are counted") {
            (try await collector.metricsText()).contains(#"trellis_collector_log_push_errors_total{reason="503"}"#)
        }
        XCTAssertTrue(loki.received.isEmpty)
        loki.recover()
        try await eventually(timeout: 60, "every line reaches Loki") { loki.received.values.reduce(0) { $0 + $1.count } >= 1500 }
        try await Task.sleep(for: .milliseconds(500))
        let received = loki.received
        for stream in streams {
            XCTAssertEqual(received["{job=\"it\", stream=\"\(stream)\"}"], (0..<500).map { "outage-\(stream)-\($0)" }, "stream \(stream)")
        }
        let tenants = Set((try String(contentsOfFile: loki.directory + "/received.jsonl", encoding: .utf8)).split(separator: "\n").compactMap {
            (try? JSON.parse(String($0)))?["tenant"]?.stringValue
        })
        XCTAssertEqual(tenants, ["shop"])
    }

    /// `kill -9` of the collector mid-stream: every acknowledged line still reaches Loki, in order,
    /// with at most the last unacknowledged batch repeated.
    func testKillNineMidStreamLosesNoAcknowledgedLine() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let loki = try await FakeLoki(self, failing: false)
        let collector = try await CollectorUnderTest(self, registry: registry, config: "loki:\n  batch_bytes: 4000\n  batch_wait: 10ms\n",
                                                     extra: ["--loki-url", "http://127.0.0.1:\(loki.port)"])
        var acknowledged: [Int] = []
        for batch in 0..<40 {
            if batch == 20 { try await collector.crashAndRestart() }
            let range = batch * 25..<(batch + 1) * 25
            if let answer = try? await collector.pushJSON(pushBody(streams: ["k"], prefix: "crash", range: range)), answer.status == 204 {
                acknowledged += Array(range)
            }
        }
        XCTAssertEqual(acknowledged.count, 1000, "the collector was back before the next push")
        try await eventually(timeout: 60, "every acknowledged line reaches Loki") {
            Set(loki.received["{job=\"it\", stream=\"k\"}"] ?? []).isSuperset(of: acknowledged.map { "crash-k-\($0)" })
        }
        let lines = loki.received["{job=\"it\", stream=\"k\"}"] ?? []
        var seen = Set<String>()
        let firstSeen = lines.filter { seen.insert($0).inserted }
        XCTAssertEqual(firstSeen, acknowledged.map { "crash-k-\($0)" }, "in order")
        XCTAssertLessThanOrEqual(lines.count - firstSeen.count, 200, "only the last unacknowledged batch may repeat")
    }

    /// Malformed pushes get 400 with a reason and store nothing; valid lines of a partly bad push are kept.
    func testBadPushesAreRefusedAndNotStored() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let collector = try await CollectorUnderTest(self, registry: registry, config: "logs:\n  limits:\n    max_line_size: 100\n")
        let now = Int64(Date().timeIntervalSince1970 * 1e9)
        let bad: [(String, String)] = [
            ("{", "invalid JSON"),
            (#"{"streams":[{"stream":{},"values":[["\#(now)","no labels"]]}]}"#, "at least one label pair"),
            (#"{"streams":[{"stream":{"service":"bad"},"values":[["yesterday","x"]]}]}"#, "timestamp"),
            (#"{"streams":[{"stream":{"service":"bad"},"values":[["\#(now)","\#(String(repeating: "x", count: 200))"]]}]}"#, "Max entry size '100' bytes"),
            (#"{"streams":[{"stream":{"service":"bad"},"values":[["1000","ancient"]]}]}"#, "timestamp too old"),
        ]
        for (body, reason) in bad {
            let answer = try await collector.pushJSON(body)
            XCTAssertEqual(answer.status, 400, body)
            XCTAssertTrue(answer.body.contains(reason), "\(answer.body) should mention \(reason)")
        }
        let snappyGarbage = try await collector.client.send("POST", "/loki/api/v1/push", body: [1, 2, 3, 4], headers: ["Content-Type": "application/x-protobuf"])
        XCTAssertEqual(snappyGarbage.status, 400)
        let partly = try await collector.pushJSON(#"{"streams":[{"stream":{"service":"bad"},"values":[["\#(now)","kept"],["\#(now)","\#(String(repeating: "y", count: 200))"]]}]}"#)
        XCTAssertEqual(partly.status, 400)
        let stored = try await collector.lines(#"{service="bad"}"#)
        XCTAssertEqual(stored, ["kept"])
        let wrongMethod = try await collector.client.send("GET", "/loki/api/v1/push")
        XCTAssertEqual(wrongMethod.status, 405)
        let badQuery = try await collector.client.send("GET", "/loki/api/v1/query_range?query=%7B")
        XCTAssertEqual(badQuery.status, 400)
    }

    /// Files are followed across rotation and truncation, and a restart resumes without repeats.
    func testFileTailFollowsRotationTruncationAndRestarts() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let dir = try temporaryDirectory(self)
        let log = dir + "/app.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let collector = try await CollectorUnderTest(self, registry: registry, config: """
            logs:
              files:
                - path: \(log)
                  labels: {job: app}
            """)
        func append(_ lines: [String], to path: String = log) throws {
            let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(lines.map { $0 + "\n" }.joined().utf8))
            try handle.close()
        }
        func stored() async throws -> [String] { try await collector.lines(#"{job="app"}"#) }
        try append(["one", "two"])
        try await eventually(timeout: 10, "first lines read") { try await stored() == ["one", "two"] }
        try FileManager.default.moveItem(atPath: log, toPath: log + ".1")
        try append(["three"], to: log + ".1")
        _ = FileManager.default.createFile(atPath: log, contents: Data("four\n".utf8))
        try await eventually(timeout: 10, "rotation: the old file finished, the new one read") { try await stored() == ["one", "two", "three", "four"] }
        try Data().write(to: URL(fileURLWithPath: log))
        // Like every tailer that goes by size, truncation is seen when the file is shorter than the position.
        try await Task.sleep(for: .milliseconds(600))
        try append(["five"])
        try await eventually(timeout: 10, "truncation: read from the start") { try await stored() == ["one", "two", "three", "four", "five"] }
        try await collector.crashAndRestart()
        try append(["six"])
        try await eventually(timeout: 10, "after a restart, only new lines") { try await stored() == ["one", "two", "three", "four", "five", "six"] }
    }

    /// Journal entries are read through sd-journal, with the unit and priority as labels.
    func testJournalEntriesAreCollected() async throws {
        let remote = "/lib/systemd/systemd-journal-remote"
        guard FileManager.default.isExecutableFile(atPath: remote) else { throw XCTSkip("systemd-journal-remote is not installed (make test installs it)") }
        let registry = try await RegistryUnderTest.start(self)
        let dir = try temporaryDirectory(self)
        func write(_ message: String) throws {
            let export = "__REALTIME_TIMESTAMP=\(Int64(Date().timeIntervalSince1970 * 1e6))\nMESSAGE=\(message)\n_SYSTEMD_UNIT=shop.service\nPRIORITY=3\n_BOOT_ID=0123456789abcdef0123456789abcdef\n\n"
            let process = Process()
            process.executableURL = URL(fileURLWithPath: remote)
            process.arguments = ["--output=\(dir)/remote.journal", "-"]
            let input = Pipe()
            process.standardInput = input
            process.standardError = FileHandle.nullDevice
            try process.run()
            input.fileHandleForWriting.write(Data(export.utf8))
            try input.fileHandleForWriting.close()
            process.waitUntilExit()
        }
        try write("before the collector")
        let collector = try await CollectorUnderTest(self, registry: registry, config: "logs:\n  journal:\n    directory: \(dir)\n")
        try await Task.sleep(for: .milliseconds(500))
        try write("payment failed")
        try await eventually(timeout: 10, "new journal entries arrive with unit and level labels") {
            try await collector.lines(#"{job="systemd-journal", unit="shop.service", level="error"}"#) == ["payment failed"]
        }
    }
}
