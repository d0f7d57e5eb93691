import Foundation
import TrellisCore
import XCTest

/// Consul's DNS interface, queried with the real `dig` (Debian's dnsutils).
final class DNSTests: XCTestCase {
    private func startRegistry(config: String? = nil) async throws -> (RegistryUnderTest, Int) {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/dig") else {
            throw XCTSkip("dig is not installed (make test installs dnsutils)")
        }
        let dir = try temporaryDirectory(self)
        var arguments = ["--dns-addr", "127.0.0.1:0"]
        if let config {
            try config.write(toFile: dir + "/registry.yaml", atomically: true, encoding: .utf8)
            arguments += ["--config", dir + "/registry.yaml"]
        }
        let registry = RegistryUnderTest(dataDir: dir + "/data", arguments: arguments)
        try await registry.start()
        addTeardownBlock { registry.child?.kill9() }
        let line = try await XCTUnwrap(registry.child).waitForLine(containing: "serving DNS on")
        let port = try XCTUnwrap(line.split(separator: " ").first { $0.hasPrefix("127.0.0.1:") }?.split(separator: ":").last.flatMap { Int($0) })
        return (registry, port)
    }

    private func dig(_ port: Int, _ arguments: [String]) throws -> String {
        try runToEnd("/usr/bin/dig", ["@127.0.0.1", "-p", String(port), "+time=2", "+tries=1"] + arguments).output
    }

    private func register(_ registry: RegistryUnderTest, count: Int, status: String = "passing") async throws {
        for i in 1...count {
            _ = try await registry.put("/v1/catalog/register", """
                {"Node":"m\(i)","Address":"10.0.\(i / 250).\(i % 250 + 1)","Service":{"ID":"web\(i)","Service":"web",
                 "Tags":["\(i % 2 == 0 ? "even" : "odd")"],"Port":\(8000 + i)},
                 "Check":{"CheckID":"web\(i)","Status":"\(status)","ServiceID":"web\(i)"}}
                """)
        }
    }

    func testServicesNodesAndSRVAnswerHealthyInstancesOnly() async throws {
        let (registry, port) = try await startRegistry()
        try await register(registry, count: 2)
        _ = try await registry.put("/v1/catalog/register", """
            {"Node":"sick","Address":"10.9.9.9","Service":{"ID":"web-sick","Service":"web","Port":9999},
             "Check":{"CheckID":"sick","Status":"critical","ServiceID":"web-sick"}}
            """)
        _ = try await registry.put("/v1/catalog/register", """
            {"Node":"m1","Address":"10.0.0.2","Service":{"ID":"api","Service":"api","Address":"fd00::7","Port":7000}}
            """)
        let a = try dig(port, ["web.service.consul", "+short"]).split(separator: "\n").sorted()
        XCTAssertEqual(a, ["10.0.0.2", "10.0.0.3"], "the critical instance is left out")
        XCTAssertEqual(try dig(port, ["even.web.service.dc1.consul", "+short"]), "10.0.0.3\n")
        let srv = try dig(port, ["_web._odd.service.consul", "SRV", "+noall", "+answer", "+additional"])
        XCTAssertTrue(srv.contains("SRV\t1 1 8001 m1.node.dc1.consul."), srv)
        XCTAssertTrue(srv.contains("m1.node.dc1.consul.\t0\tIN\tA\t10.0.0.2"), srv)
        let tcpDefault = try dig(port, ["_web._tcp.service.consul", "SRV", "+short"]).split(separator: "\n")
        XCTAssertEqual(tcpDefault.count, 2, "_tcp is no tag filter")
        XCTAssertEqual(try dig(port, ["api.service.consul", "AAAA", "+short"]), "fd00::7\n")
        let apiSRV = try dig(port, ["api.service.consul", "SRV", "+short"])
        XCTAssertTrue(apiSRV.contains("fd000000000000000000000000000007.addr.dc1.consul."), apiSRV)
        XCTAssertEqual(try dig(port, ["m2.node.consul", "+short"]), "10.0.0.3\n")

        let missing = try dig(port, ["nope.service.consul"])
        XCTAssertTrue(missing.contains("status: NXDOMAIN"), missing)
        XCTAssertTrue(missing.contains("IN\tSOA\tns.consul. hostmaster.consul."), missing)
        let query = try dig(port, ["geo.query.consul"])
        XCTAssertTrue(query.contains("status: NXDOMAIN"), query)
        let noAAAA = try dig(port, ["web.service.consul", "AAAA"])
        XCTAssertTrue(noAAAA.contains("status: NOERROR") && noAAAA.contains("ANSWER: 0"), noAAAA)
        let outside = try dig(port, ["example.com"])
        XCTAssertTrue(outside.contains("status: REFUSED"), outside)
        XCTAssertEqual(try dig(port, ["web.service.consul", "+tcp", "+short"]).split(separator: "\n").count, 2, "TCP answers too")
        // A query near the 512-byte classic limit (a long name, EDNS with a cookie) is read whole.
        let long = (0..<3).map { _ in String(repeating: "x", count: 60) }.joined(separator: ".") + ".web.service.consul"
        let longAnswer = try dig(port, [long, "+cookie"])
        XCTAssertTrue(longAnswer.contains("status: NXDOMAIN"), longAnswer)

        // Answers follow the catalog: a failing check takes an instance out of DNS at once.
        _ = try await registry.put("/v1/catalog/register", """
            {"Node":"m1","Address":"10.0.0.2","Check":{"CheckID":"web1","Status":"critical","ServiceID":"web1"}}
            """)
        XCTAssertEqual(try dig(port, ["web.service.consul", "+short"]), "10.0.0.3\n")
    }

    func testLargeAnswersAreTrimmedForUDPAndWholeOverTCP() async throws {
        let (registry, port) = try await startRegistry(config: """
            dns_config:
              enable_truncate: true
              udp_answer_limit: 0
              service_ttl:
                "*": 5s
                web: 30s
              node_ttl: 10s
            """)
        try await register(registry, count: 60)
        // Without EDNS a UDP answer holds at most 512 bytes: dig sees TC and retries over TCP.
        let udp = try dig(port, ["web.service.consul", "+noedns", "+ignore", "+noall", "+answer", "+comments"])
        XCTAssertTrue(udp.contains(" tc"), udp)
        let udpCount = udp.split(separator: "\n").filter { $0.contains("\tIN\tA\t") }.count
        XCTAssertGreaterThan(udpCount, 0)
        XCTAssertLessThan(udpCount, 60)
        let retried = try dig(port, ["web.service.consul", "+noedns", "+short"]).split(separator: "\n")
        XCTAssertEqual(retried.count, 60, "dig retried over TCP and got every instance")
        let ttl = try dig(port, ["web.service.consul", "+noall", "+answer"]).split(separator: "\n").first ?? ""
        XCTAssertTrue(ttl.contains("\t30\tIN\tA"), String(ttl))
        let node = try dig(port, ["m3.node.consul", "+noall", "+answer"])
        XCTAssertTrue(node.contains("\t10\tIN\tA"), node)
    }

    func testConsulsDefaultAnswerLimitAndBadDNSConfigRefused() async throws {
        let (registry, port) = try await startRegistry()
        try await register(registry, count: 8)
        let limited = try dig(port, ["web.service.consul", "+short"]).split(separator: "\n")
        XCTAssertEqual(limited.count, 3, "Consul's udp_answer_limit of 3")
        XCTAssertEqual(try dig(port, ["web.service.consul", "+tcp", "+short"]).split(separator: "\n").count, 8)

        let dir = try temporaryDirectory(self)
        try "dns_config:\n  node_ttl: soon\n".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        let bad = try runToEnd(TrellisBinary.path, ["registry", "--config", dir + "/bad.yaml", "--data-dir", dir])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.output.contains("dns_config.node_ttl: invalid duration"), bad.output)
    }
}
