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

    func testAGatewayIsCheckedAgainstTheServices() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("topology-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "rules: [{name: a, backendRefs: [{name: api}]}]".write(toFile: dir + "/gateway.yaml", atomically: true, encoding: .utf8)
        try "rules: [{name: a, backendRefs: [{name: nobody}]}]".write(toFile: dir + "/stray.yaml", atomically: true, encoding: .utf8)
        var topology = try Topology.parse("""
            gateway: {name: edge, port: 8080, workers: 2, policy: gateway.yaml}
            services: [{name: api, command: [sh]}]
            """, relativeTo: dir)
        try topology.check(searchPath: "/usr/bin:/bin")
        XCTAssertEqual(topology.gateway?.name, "edge")
        XCTAssertEqual(topology.gateway?.port, 8080)
        XCTAssertEqual(topology.gateway?.workers, 2)
        XCTAssertEqual(topology.gateway?.backends, ["api"])
        XCTAssertNotNil(topology.gateway?.policyText)
        for (yaml, expected) in [
            ("gateway: {policy: \(dir)/stray.yaml}\nservices: [{name: api, command: [sh]}]", "unknown service \"nobody\""),
            ("gateway: {name: api, policy: \(dir)/gateway.yaml}\nservices: [{name: api, command: [sh]}]", "also a service's name"),
            ("gateway: {policy: \(dir)/missing.yaml}\nservices: [{name: api, command: [sh]}]", "gateway.policy"),
            ("gateway: {workers: 0, policy: x.yaml}\nservices: [{name: api, command: [sh]}]", "workers"),
            ("gateway: {port: 80}\nservices: [{name: api, command: [sh]}]", "policy"),
        ] {
            XCTAssertTrue(failure(yaml).contains(expected), "\(yaml): \(failure(yaml))")
        }
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
