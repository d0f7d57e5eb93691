import Fleet
import Foundation
import TrellisCore
import XCTest

final class TopologyTests: XCTestCase {
    private let base = "/tmp"

    private func failure(_ yaml: String, check: Bool = true) -> String {
        do {
            var topology = try Topology.parse(yaml, relativeTo: base)
            if check { try topology.check(searchPath: "/usr/bin:/bin") }
            return "accepted"
        } catch {
            return error.description
        }
    }

    func testParsesServicesReplicasCanaryAndRelativePaths() throws {
        var topology = try Topology.parse("""
            data_dir: run
            registry: {port: 8500, acl: false}
            collector: {port: 0}
            services:
              - name: api
                command: [sh, -c, "exec sleep 60"]
                replicas: 3
                upstreams: [db]
                tags: [stable]
                meta: {weight: 5}
                canary: {replicas: 1, tags: [canary]}
                health_path: /health
                mtls: permissive
              - {name: db, command: [sh]}
            """, relativeTo: base)
        try topology.check(searchPath: "/usr/bin:/bin")
        XCTAssertEqual(topology.registryPort, 8500)
        XCTAssertFalse(topology.acl)
        XCTAssertTrue(try Topology.parse("services:\n  - {name: db, command: [sh]}\n", relativeTo: base).acl, "ACLs are on unless turned off")
        XCTAssertNil(topology.collectorPort)
        let api = topology.services[0]
        XCTAssertEqual(api.command, ["/usr/bin/sh", "-c", "exec sleep 60"])
        XCTAssertEqual((0..<3).map { api.tags(ofReplica: $0) }, [["stable"], ["stable"], ["canary"]])
        XCTAssertEqual(api.meta.map(\.key), ["weight"])
        XCTAssertEqual(api.meta.map(\.value), ["5"])
        XCTAssertEqual(topology.services[1].replicas, 1)
        XCTAssertEqual(api.mtls, "permissive")
        XCTAssertEqual(topology.services[1].mtls, "strict", "every hop between sidecars is mutual TLS unless said otherwise")
    }

    func testRejectsBadTopologiesByName() {
        let two = "services:\n  - {name: a, command: [sh]}\n"
        XCTAssertEqual(failure(two + "  - {name: a, command: [sh]}\n"), "services: the name \"a\" is used twice")
        XCTAssertEqual(failure("services:\n  - {name: a, command: [sh], upstreams: [b]}\n"),
                       "services.a.upstreams: unknown service \"b\" (known: a)")
        XCTAssertEqual(failure("services:\n  - {name: a, command: [no-such-command-here]}\n"),
                       "services.a.command: command not found or not executable: no-such-command-here")
        XCTAssertEqual(failure("services:\n  - {name: a, command: [sh], replica: 2}\n", check: false),
                       "services[0].replica: unknown field (allowed: canary, command, health_path, meta, mtls, name, policy, replicas, tags, upstreams)")
        XCTAssertEqual(failure("services:\n  - {name: a, command: [sh], mtls: maybe}\n", check: false),
                       "services[0].mtls must be strict, permissive or off, got \"maybe\"")
        XCTAssertEqual(failure("services:\n  - {name: a, command: [sh], replicas: 1, canary: {replicas: 1}}\n", check: false),
                       "services[0].canary.replicas must leave at least one regular replica (1-0)")
        XCTAssertEqual(failure("services:\n  - {name: A_b, command: [sh]}\n", check: false),
                       "services[0].name must be lower-case letters, digits and dashes, got \"A_b\"")
        XCTAssertEqual(failure("registry: {port: 70000}\nservices:\n  - {name: a, command: [sh]}\n", check: false),
                       "registry.port must be 1-65535, or 0 for a free one")
        XCTAssertEqual(failure("services: []\n", check: false), "services: list at least one service")
        XCTAssertEqual(failure("services:\n  - {name: inbound, command: [sh]}\n  - {name: a, command: [sh], upstreams: [inbound]}\n"),
                       "services.a.upstreams: \"inbound\" names the sidecar's inbound listener; rename that service")
    }

    func testRejectsAPolicyForAnotherServiceOrInvalid() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("topology-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "service: other\n".write(to: directory.appendingPathComponent("other.yaml"), atomically: true, encoding: .utf8)
        try "service: a\ndefaults: {timeouts: {connect: soon}}\n".write(to: directory.appendingPathComponent("bad.yaml"), atomically: true, encoding: .utf8)
        func check(_ policy: String) -> String {
            do {
                var topology = try Topology.parse("services:\n  - {name: a, command: [sh], policy: \(policy)}\n", relativeTo: directory.path)
                try topology.check(searchPath: "/usr/bin:/bin")
                return "accepted"
            } catch { return error.description }
        }
        XCTAssertEqual(check("other.yaml"), "services.a.policy: \(directory.path)/other.yaml is for service \"other\"")
        XCTAssertTrue(check("bad.yaml").hasPrefix("services.a.policy: ") && check("bad.yaml").contains("defaults.timeouts.connect"),
                      check("bad.yaml"))
        XCTAssertTrue(check("missing.yaml").hasPrefix("services.a.policy: cannot read"), check("missing.yaml"))
    }
}
