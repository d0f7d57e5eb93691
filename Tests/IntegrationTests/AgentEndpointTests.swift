import Foundation
import TrellisCore
import XCTest

/// Consul's agent endpoints about the registry's own node and the health of its services.
final class AgentEndpointTests: XCTestCase {
    func testLocalServiceHealthAnswersWithTheStatusCodeLoadBalancersRead() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/agent/service/register",
                                   #"{"Name":"web","ID":"web-1","Check":{"CheckID":"w1","TTL":"1h","Status":"passing"}}"#)
        _ = try await registry.put("/v1/agent/service/register",
                                   #"{"Name":"web","ID":"web-2","Check":{"CheckID":"w2","TTL":"1h","Status":"warning"}}"#)

        let passing = try await registry.get("/v1/agent/health/service/id/web-1")
        XCTAssertEqual(passing.status, 200)
        let body = try JSON.parse(passing.body)
        XCTAssertEqual(body["AggregatedStatus"], .string("passing"))
        XCTAssertEqual(body["Service"]?["ID"], .string("web-1"))
        XCTAssertEqual(body["Checks"]?.arrayValue?.compactMap { $0["CheckID"]?.stringValue }, ["serfHealth", "w1"])

        let byName = try await registry.get("/v1/agent/health/service/name/web")
        XCTAssertEqual(byName.status, 429, "the worst instance (warning) decides")
        XCTAssertEqual(try JSON.parse(byName.body).arrayValue?.count, 2)
        let text = try await registry.get("/v1/agent/health/service/name/web?format=text")
        XCTAssertEqual(String(decoding: text.body, as: UTF8.self), "warning")

        _ = try await registry.put("/v1/agent/check/fail/w1")
        let critical = try await registry.get("/v1/agent/health/service/id/web-1?format=text")
        XCTAssertEqual(critical.status, 503)
        XCTAssertEqual(String(decoding: critical.body, as: UTF8.self), "critical")

        let unknown = try await registry.get("/v1/agent/health/service/id/nope")
        XCTAssertEqual(unknown.status, 404)
        XCTAssertEqual(try JSON.parse(unknown.body)["Service"], .null)
        let unknownText = try await registry.get("/v1/agent/health/service/id/nope?format=text")
        XCTAssertEqual(String(decoding: unknownText.body, as: UTF8.self), "ServiceId nope not found")
        let unknownName = try await registry.get("/v1/agent/health/service/name/nope?format=text")
        XCTAssertEqual(unknownName.status, 404)
        XCTAssertEqual(String(decoding: unknownName.body, as: UTF8.self), "ServiceName nope Not Found")
    }

    func testNodeMaintenanceTakesEveryLocalServiceOutOfRotation() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/agent/service/register",
                                   #"{"Name":"web","ID":"web-1","Check":{"TTL":"1h","Status":"passing"}}"#)
        let missing = try await registry.put("/v1/agent/maintenance")
        XCTAssertEqual(missing.status, 400)
        XCTAssertEqual(String(decoding: missing.body, as: UTF8.self), "Missing value for enable")
        let enabled = try await registry.put("/v1/agent/maintenance?enable=true&reason=kernel+upgrade")
        XCTAssertEqual(enabled.status, 200)
        let checks = try await registry.json("/v1/health/node/\(registry.node)")
        let maintenance = checks.arrayValue?.first { $0["CheckID"] == .string("_node_maintenance") }
        XCTAssertEqual(maintenance?["Status"], .string("critical"))
        XCTAssertEqual(maintenance?["Type"], .string("maintenance"))
        XCTAssertEqual(maintenance?["Notes"], .string("kernel upgrade"))
        XCTAssertEqual(maintenance?["Name"], .string("Node Maintenance Mode"))
        let passing = try await registry.json("/v1/health/service/web?passing")
        XCTAssertEqual(passing.arrayValue?.count, 0)
        let health = try await registry.get("/v1/agent/health/service/id/web-1?format=text")
        XCTAssertEqual(String(decoding: health.body, as: UTF8.self), "maintenance")
        XCTAssertEqual(health.status, 503)

        _ = try await registry.put("/v1/agent/maintenance?enable=false")
        let back = try await registry.json("/v1/health/service/web?passing")
        XCTAssertEqual(back.arrayValue?.count, 1)
        let wrongMethod = try await registry.get("/v1/agent/maintenance?enable=true")
        XCTAssertEqual(wrongMethod.status, 405)
    }

    func testSelfHostMetricsAndTokenAnswerAsASingleServerAgent() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let me = try await registry.json("/v1/agent/self")
        let serf = try XCTUnwrap(me["DebugConfig"]?["SerfAdvertiseAddrLAN"]?.stringValue)
        XCTAssertTrue(serf.hasPrefix("tcp://") && serf.hasSuffix(":8301"), serf)
        XCTAssertEqual(me["DebugConfig"]?["EnableScriptChecks"], .bool(false))

        let version = try await registry.json("/v1/agent/version")
        XCTAssertEqual(version["HumanVersion"], me["Config"]?["Version"])
        let host = try await registry.json("/v1/agent/host")
        XCTAssertGreaterThan(host["Memory"]?["total"]?.uint64Value ?? 0, 0)
        XCTAssertFalse(host["CPU"]?.arrayValue?.isEmpty ?? true)
        XCTAssertEqual(host["Host"]?["os"], .string("linux"))
        XCTAssertGreaterThan(host["Disk"]?["total"]?.uint64Value ?? 0, 0)
        XCTAssertEqual(host["Errors"], .null)

        _ = try await registry.get("/v1/catalog/services")
        let metrics = try await registry.json("/v1/agent/metrics")
        XCTAssertNotNil(metrics["Timestamp"]?.stringValue)
        let gauges = metrics["Gauges"]?.arrayValue?.compactMap { $0["Name"]?.stringValue } ?? []
        XCTAssertTrue(gauges.contains("trellis_registry_service_instances"), "\(gauges)")
        XCTAssertTrue(gauges.contains("consul.runtime.alloc_bytes"), "the gauge HashiCorp's TestAPI_AgentMetrics looks for")
        let members = try await registry.json("/v1/agent/members")
        XCTAssertEqual(members[0]?["Tags"]?["acls"], .string("0"), "ACLs disabled, as Consul's member tag says")
        let counters = metrics["Counters"]?.arrayValue ?? []
        XCTAssertTrue(counters.contains { $0["Name"] == .string("trellis_registry_http_requests_total")
            && $0["Labels"]?["endpoint"] == .string("/v1/catalog/services") })
        let prometheus = try await registry.get("/v1/agent/metrics?format=prometheus")
        XCTAssertTrue(String(decoding: prometheus.body, as: UTF8.self).contains("# TYPE trellis_registry_services gauge"))

        let token = try await registry.put("/v1/agent/token/default", #"{"Token":"x"}"#)
        XCTAssertEqual(token.status, 401)
        XCTAssertEqual(String(decoding: token.body, as: UTF8.self), "ACL support disabled")
        let forceLeave = try await registry.put("/v1/agent/force-leave/\(registry.node)?prune=1")
        XCTAssertEqual(forceLeave.status, 200, "the agent's own node, as in HashiCorp's TestAPI_AgentForceLeave")
        let unknown = try await registry.put("/v1/agent/force-leave/nonexistent-node?prune=1")
        XCTAssertEqual(unknown.status, 500)
        XCTAssertEqual(String(decoding: unknown.body, as: UTF8.self), "agent: No node found with name 'nonexistent-node'")
        // HashiCorp's TestAPI_AgentJoin: join the address DebugConfig advertises, without `tcp://`.
        let joinSelf = try await registry.put("/v1/agent/join/\(serf.dropFirst(6))?wan=0")
        XCTAssertEqual(joinSelf.status, 200)
        let joinOther = try await registry.put("/v1/agent/join/10.9.9.9:8301")
        XCTAssertEqual(joinOther.status, 500)
    }

    func testLeaveShutsTheRegistryDownGracefully() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let left = try await registry.put("/v1/agent/leave")
        XCTAssertEqual(left.status, 200)
        let process = try XCTUnwrap(registry.child?.process)
        try await eventually(timeout: 10, "the registry exits after leave") { !process.isRunning }
        XCTAssertEqual(process.terminationStatus, 0)
    }

    func testNodeIdentityAndMetaFromFlagsAndConfig() async throws {
        let dir = try temporaryDirectory(self)
        let id = "8f246b77-f3e1-ff88-5b48-8ec93abf3e05"
        let registry = RegistryUnderTest(dataDir: dir, arguments: ["--node-id", id, "--node-meta", "env:prod", "--node-meta", "rack:r1"])
        try await registry.start()
        addTeardownBlock { registry.child?.kill9() }
        let node = try await registry.json("/v1/catalog/node/\(registry.node)")
        XCTAssertEqual(node["Node"]?["ID"], .string(id))
        XCTAssertEqual(node["Node"]?["Meta"]?["env"], .string("prod"))
        XCTAssertEqual(node["Node"]?["Meta"]?["consul-version"]?.stringValue?.isEmpty, false)
        let filtered = try await registry.json("/v1/catalog/nodes?node-meta=rack:r1")
        XCTAssertEqual(filtered.arrayValue?.count, 1)
        let services = try await registry.json("/v1/catalog/services?node-meta=env:prod")
        XCTAssertNotNil(services["consul"])
        let me = try await registry.json("/v1/agent/self")
        XCTAssertEqual(me["Meta"]?["rack"], .string("r1"))

        let config = dir + "/registry.yaml"
        try "node_meta:\n  zone: a\nenable_script_checks: maybe\n".write(toFile: config, atomically: true, encoding: .utf8)
        let refused = try runToEnd(TrellisBinary.path, ["registry", "--config", config, "--data-dir", dir + "/other"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.output.contains("enable_script_checks must be true or false"), refused.output)
        let reserved = try runToEnd(TrellisBinary.path, ["registry", "--node-meta", "consul-x:y", "--data-dir", dir + "/other"])
        XCTAssertTrue(reserved.output.contains("Key prefix 'consul-' is reserved"), reserved.output)
        let badID = try runToEnd(TrellisBinary.path, ["registry", "--node-id", "nope", "--data-dir", dir + "/other"])
        XCTAssertTrue(badID.output.contains("node_id must be a UUID"), badID.output)
    }

    func testScriptChecksRunOnlyWhenEnabled() async throws {
        let disabled = try await RegistryUnderTest.start(self)
        let refused = try await disabled.put("/v1/agent/check/register",
                                             #"{"Name":"s","Args":["/bin/sh","-c","exit 0"],"Interval":"1s"}"#)
        XCTAssertEqual(refused.status, 400)
        XCTAssertTrue(String(decoding: refused.body, as: UTF8.self).contains("enable_script_checks"))

        let registry = RegistryUnderTest(dataDir: try temporaryDirectory(self), arguments: ["--enable-script-checks"])
        try await registry.start()
        addTeardownBlock { registry.child?.kill9() }
        let long = String(repeating: "x", count: 5000)
        for (id, script) in [("ok", "echo fine"), ("warn", "echo careful; exit 1"), ("bad", "echo broken; exit 2"),
                             ("long", "printf \(long)"), ("slow", "sleep 5")] {
            let (status, _, body) = try await registry.put("/v1/agent/check/register", """
                {"Name":"\(id)","CheckID":"\(id)","Args":["/bin/sh","-c","\(script)"],"Interval":"1s","Timeout":"500ms"}
                """)
            XCTAssertEqual(status, 200, String(decoding: body, as: UTF8.self))
        }
        try await eventually(timeout: 15, "every script check has run") {
            let checks = try await registry.json("/v1/agent/checks")
            return ["ok", "warn", "bad", "long", "slow"].allSatisfy { checks[$0]?["Output"]?.stringValue?.isEmpty == false }
        }
        let checks = try await registry.json("/v1/agent/checks")
        XCTAssertEqual(checks["ok"]?["Status"], .string("passing"))
        XCTAssertEqual(checks["ok"]?["Output"], .string("fine\n"))
        XCTAssertEqual(checks["ok"]?["Type"], .string("script"))
        XCTAssertEqual(checks["warn"]?["Status"], .string("warning"))
        XCTAssertEqual(checks["bad"]?["Status"], .string("critical"))
        XCTAssertEqual(checks["long"]?["Output"]?.stringValue?.hasSuffix("(captured 4096 of 5000 bytes)"), true)
        XCTAssertEqual(checks["slow"]?["Status"], .string("critical"))
        XCTAssertEqual(checks["slow"]?["Output"], .string("Timed out (500ms) running check"))
    }
}

extension AgentEndpointTests {
    /// Consul's `addresses.http = "unix://…"` and `ports.https` with `cert_file`/`key_file`, through
    /// real curl and a certificate made by openssl.
    func testTheAPIIsServedOnAUnixSocketAndOverTLSToo() async throws {
        let dir = try temporaryDirectory(self)
        let openssl = try runToEnd("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                                        "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
                                                        "subjectAltName=IP:127.0.0.1", "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem"])
        XCTAssertEqual(openssl.status, 0, openssl.output)
        let socket = dir + "/registry.sock"
        try """
            addresses:
              http: unix://\(socket)
            ports:
              https: 0
            cert_file: \(dir)/cert.pem
            key_file: \(dir)/key.pem
            """.write(toFile: dir + "/registry.yaml", atomically: true, encoding: .utf8)
        let registry = RegistryUnderTest(dataDir: dir + "/data", arguments: ["--config", dir + "/registry.yaml"])
        try await registry.start()
        addTeardownBlock { registry.child?.kill9() }
        let child = try XCTUnwrap(registry.child)
        let httpsLine = try await child.waitForLine(containing: "listening on https://")
        _ = try await child.waitForLine(containing: "listening on unix://")
        let httpsAddress = try XCTUnwrap(httpsLine.split(separator: " ").first { $0.hasPrefix("https://") })

        let overSocket = try runToEnd("/usr/bin/curl", ["-sS", "--unix-socket", socket, "http://localhost/v1/status/leader"])
        let leader = try await registry.json("/v1/status/leader")
        XCTAssertEqual(overSocket.output, leader.text)
        let overTLS = try runToEnd("/usr/bin/curl", ["-sS", "--cacert", dir + "/cert.pem", "\(httpsAddress)/v1/catalog/services"])
        XCTAssertTrue(overTLS.output.contains("\"consul\""), overTLS.output)
        let plainToTLS = try runToEnd("/usr/bin/curl", ["-sS", "--max-time", "3", "http://" + httpsAddress.dropFirst(8) + "/v1/status/leader"])
        XCTAssertNotEqual(plainToTLS.status, 0, "plaintext is not answered on the TLS port")

        try "ports:\n  https: 8501\n".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        let missingKey = try runToEnd(TrellisBinary.path, ["registry", "--config", dir + "/bad.yaml", "--data-dir", dir + "/other"])
        XCTAssertTrue(missingKey.output.contains("ports.https needs cert_file and key_file"), missingKey.output)
        let badCert = try runToEnd(TrellisBinary.path, ["registry", "--https-port", "0", "--cert-file", dir + "/nope.pem",
                                                        "--key-file", dir + "/key.pem", "--data-dir", dir + "/other2",
                                                        "--http-addr", "127.0.0.1:0"])
        XCTAssertNotEqual(badCert.status, 0)
        XCTAssertTrue(badCert.output.contains("cert_file"), badCert.output)
    }
}

extension AgentEndpointTests {
    func testMonitorStreamsLogLinesAndReloadAppliesTheConfigFileAgain() async throws {
        let dir = try temporaryDirectory(self)
        let config = dir + "/registry.yaml"
        try "log_level: warning\nnode_meta:\n  env: a\n".write(toFile: config, atomically: true, encoding: .utf8)
        let registry = RegistryUnderTest(dataDir: dir + "/data", arguments: ["--config", config])
        try await registry.start()
        addTeardownBlock { registry.child?.kill9() }

        let bad = try await registry.get("/v1/agent/monitor?loglevel=bogus")
        XCTAssertEqual(bad.status, 400)
        XCTAssertEqual(String(decoding: bad.body, as: UTF8.self), "Unknown log level: bogus")
        // A monitor at INFO sees lines the registry's own output (at warning) leaves out.
        let text = try ChildProcess("/usr/bin/curl", ["-sN", "http://\(registry.address)/v1/agent/monitor?loglevel=info"])
        let json = try ChildProcess("/usr/bin/curl", ["-sN", "http://\(registry.address)/v1/agent/monitor?loglevel=INFO&logjson"])
        addTeardownBlock { text.kill9(); json.kill9() }
        let attached = try await text.waitForLine(containing: "log monitor attached", timeout: 5)
        XCTAssertTrue(attached.contains("[INFO]"), attached)

        try "log_level: info\nnode_meta:\n  env: b\n".write(toFile: config, atomically: true, encoding: .utf8)
        let reloaded = try await registry.put("/v1/agent/reload")
        XCTAssertEqual(reloaded.status, 200)
        let node = try await registry.json("/v1/catalog/node/\(registry.node)")
        XCTAssertEqual(node["Node"]?["Meta"]?["env"], .string("b"))
        let me = try await registry.json("/v1/agent/self")
        XCTAssertEqual(me["Meta"]?["env"], .string("b"), "agent/self shows the reloaded metadata")
        XCTAssertEqual(me["DebugConfig"]?["NodeMeta"], .stringMap(["env": "b"]))
        let line = try await text.waitForLine(containing: "configuration reloaded", timeout: 5)
        // The test registry runs with `--log-level warning`: flags win over the file on reload too.
        XCTAssertTrue(line.contains("[INFO]  trellis.registry: configuration reloaded: log_level=warning"), line)
        let jsonLine = try await json.waitForLine(containing: "configuration reloaded", timeout: 5)
        let parsed = try JSON.parse(jsonLine)
        XCTAssertEqual(parsed["@level"], .string("info"))
        XCTAssertEqual(parsed["@module"], .string("trellis.registry"))

        // A file that no longer parses changes nothing.
        try "node_meta: [\n".write(toFile: config, atomically: true, encoding: .utf8)
        let failed = try await registry.put("/v1/agent/reload")
        XCTAssertEqual(failed.status, 500)
        XCTAssertTrue(String(decoding: failed.body, as: UTF8.self).hasPrefix("Failed reloading config:"))
        let kept = try await registry.json("/v1/catalog/node/\(registry.node)")
        XCTAssertEqual(kept["Node"]?["Meta"]?["env"], .string("b"))

        // The monitor's connection ends with the client: the registry keeps serving.
        text.kill9()
        json.kill9()
        let leader = try await registry.get("/v1/status/leader")
        XCTAssertEqual(leader.status, 200)
    }
}

extension AgentEndpointTests {
    /// Consul's service definitions in the agent's config file (`service`, `services`): registered at
    /// start, updated and removed on reload, as HashiCorp's `TestAPI_AgentReload` expects.
    func testServicesOfTheConfigFileAreRegisteredAndFollowReloads() async throws {
        let dir = try temporaryDirectory(self)
        let config = dir + "/registry.json"
        try #"{"services": [{"name": "db", "port": 5432, "tags": ["primary"], "check": {"ttl": "1h", "status": "passing"}}, {"name": "cache", "port": 6379}]}"#
            .write(toFile: config, atomically: true, encoding: .utf8)
        let registry = RegistryUnderTest(dataDir: dir + "/data", arguments: ["--config", config])
        try await registry.start()
        addTeardownBlock { registry.child?.kill9() }
        let services = try await registry.json("/v1/agent/services")
        XCTAssertEqual(services["db"]?["Port"], .int(5432))
        XCTAssertEqual(services["db"]?["Tags"], .strings(["primary"]))
        XCTAssertNotNil(services["cache"])
        let passing = try await registry.json("/v1/health/service/db?passing")
        XCTAssertEqual(passing.arrayValue?.count, 1)
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"api","Port":8080}"#)

        try #"{"service": {"name": "redis", "port": 1234, "Meta": {"some": "meta"}}, "services": [{"name": "db", "port": 5433}]}"#
            .write(toFile: config, atomically: true, encoding: .utf8)
        let reloaded = try await registry.put("/v1/agent/reload")
        XCTAssertEqual(reloaded.status, 200, String(decoding: reloaded.body, as: UTF8.self))
        let after = try await registry.json("/v1/agent/services")
        XCTAssertEqual(after["redis"]?["Port"], .int(1234))
        XCTAssertEqual(after["redis"]?["Meta"]?["some"], .string("meta"))
        XCTAssertEqual(after["db"]?["Port"], .int(5433))
        XCTAssertNil(after["cache"], "a service the file no longer defines is removed")
        XCTAssertNotNil(after["api"], "services registered through the API are not the file's")
        let checks = try await registry.json("/v1/agent/checks")
        XCTAssertNil(checks["service:db"], "the reloaded definition has no check any more")

        try #"{"services": [{"name": "db", "port": "five"}]}"#.write(toFile: config, atomically: true, encoding: .utf8)
        let refused = try await registry.put("/v1/agent/reload")
        XCTAssertEqual(refused.status, 500)
        XCTAssertTrue(String(decoding: refused.body, as: UTF8.self).contains("service definition 1: Port must be an integer"),
                      String(decoding: refused.body, as: UTF8.self))
        let unchanged = try await registry.json("/v1/agent/services")
        XCTAssertEqual(unchanged["db"]?["Port"], .int(5433))

        let badStart = try runToEnd(TrellisBinary.path, ["registry", "--config", config, "--data-dir", dir + "/other",
                                                         "--http-addr", "127.0.0.1:0"])
        XCTAssertNotEqual(badStart.status, 0)
        XCTAssertTrue(badStart.output.contains("service definition 1"), badStart.output)
    }
}
