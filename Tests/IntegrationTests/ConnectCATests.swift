import Foundation
import TrellisCore
import XCTest

/// The registry's certificate authority, checked with the real `openssl` command line.
final class ConnectCATests: XCTestCase {
    func testLeavesVerifyAgainstTheRootsAndCarryTheServicesSPIFFEIDAcrossACrash() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let dir = try temporaryDirectory(self)
        let roots = try await registry.json("/v1/connect/ca/roots")
        let trustDomain = try XCTUnwrap(roots["TrustDomain"]?.stringValue)
        XCTAssertTrue(trustDomain.hasSuffix(".consul"))
        XCTAssertNotNil(UUID(uuidString: String(trustDomain.dropLast(".consul".count))), trustDomain)
        let root = try XCTUnwrap(roots["Roots"]?[0])
        XCTAssertEqual(root["ID"], roots["ActiveRootID"])
        XCTAssertEqual(root["Active"], .bool(true))
        XCTAssertEqual(root["PrivateKeyType"], .string("ec"))
        XCTAssertNil(root["PrivateKey"], "the root's key never leaves the registry")
        let agentRoots = try await registry.json("/v1/agent/connect/ca/roots")
        XCTAssertEqual(agentRoots["ActiveRootID"], roots["ActiveRootID"])

        let leaf = try await registry.json("/v1/agent/connect/ca/leaf/web")
        let uri = "spiffe://\(trustDomain)/ns/default/dc/dc1/svc/web"
        XCTAssertEqual(leaf["ServiceURI"], .string(uri))
        XCTAssertEqual(leaf["Service"], .string("web"))
        try write(leaf, root: root, to: dir)
        XCTAssertEqual(try openssl(["verify", "-CAfile", "\(dir)/roots.pem", "\(dir)/leaf.pem"]), "\(dir)/leaf.pem: OK")
        XCTAssertTrue(try openssl(["x509", "-in", "\(dir)/leaf.pem", "-noout", "-ext", "subjectAltName"]).contains("URI:\(uri)"))
        XCTAssertEqual(try openssl(["x509", "-in", "\(dir)/leaf.pem", "-noout", "-pubkey"]),
                       try openssl(["pkey", "-in", "\(dir)/leaf.key", "-pubout"]), "the key is the certificate's")
        let serial = try openssl(["x509", "-in", "\(dir)/leaf.pem", "-noout", "-serial"]).lowercased()
        XCTAssertEqual(serial, "serial=" + (leaf["SerialNumber"]?.stringValue ?? "").replacingOccurrences(of: ":", with: ""))
        let again = try await registry.json("/v1/agent/connect/ca/leaf/web")
        XCTAssertEqual(again["SerialNumber"], leaf["SerialNumber"], "a leaf is reused until it is due for renewal")

        try await registry.crashAndRestart()
        let kept = try await registry.json("/v1/connect/ca/roots")
        XCTAssertEqual(kept["ActiveRootID"], roots["ActiveRootID"])
        XCTAssertEqual(kept["TrustDomain"], roots["TrustDomain"])
        try writeRoots(kept, to: "\(dir)/roots.pem")
        XCTAssertEqual(try openssl(["verify", "-CAfile", "\(dir)/roots.pem", "\(dir)/leaf.pem"]), "\(dir)/leaf.pem: OK",
                       "a leaf issued before the crash stays valid")
    }

    func testRotatingTheRootReissuesLeavesAndKeepsTheOldRootTrusted() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let dir = try temporaryDirectory(self)
        let before = try await registry.json("/v1/connect/ca/roots")
        let old = try await registry.get("/v1/agent/connect/ca/leaf/web")
        let oldIndex = try XCTUnwrap(old.headers["x-consul-index"])
        let oldLeaf = try JSON.parse(old.body)
        try write(oldLeaf, root: try XCTUnwrap(before["Roots"]?[0]), to: dir)

        let waiting = Task { try await registry.get("/v1/agent/connect/ca/leaf/web?index=\(oldIndex)&wait=30s") }
        try await Task.sleep(for: .milliseconds(300))
        _ = try openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "\(dir)/new-root.key"])
        let key = try String(contentsOfFile: "\(dir)/new-root.key", encoding: .utf8)
        let config = JSON.object(JSONObject([("Provider", .string("consul")), ("Config", .object(JSONObject([
            ("LeafCertTTL", .string("24h")), ("PrivateKey", .string(key)),
        ])))]))
        let rotated = try await registry.put("/v1/connect/ca/configuration", config.text)
        XCTAssertEqual(rotated.status, 200, String(decoding: rotated.body, as: UTF8.self))

        let renewed = try await waiting.value
        XCTAssertEqual(renewed.status, 200)
        let newLeaf = try JSON.parse(renewed.body)
        XCTAssertNotEqual(newLeaf["SerialNumber"], oldLeaf["SerialNumber"], "the blocked leaf query returns the reissued leaf")
        XCTAssertNotEqual(renewed.headers["x-consul-index"], oldIndex)

        let after = try await registry.json("/v1/connect/ca/roots")
        XCTAssertNotEqual(after["ActiveRootID"], before["ActiveRootID"])
        let states = (after["Roots"]?.arrayValue ?? []).map { ($0["ID"]?.stringValue ?? "", $0["Active"]?.boolValue ?? false) }
        XCTAssertEqual(states.count, 2, "the old root stays trusted next to the new one")
        XCTAssertEqual(states.first { $0.0 == before["ActiveRootID"]?.stringValue }?.1, false)
        try writeRoots(after, to: "\(dir)/roots.pem")
        try (newLeaf["CertPEM"]?.stringValue ?? "").write(toFile: "\(dir)/new-leaf.pem", atomically: true, encoding: .utf8)
        XCTAssertEqual(try openssl(["verify", "-CAfile", "\(dir)/roots.pem", "\(dir)/leaf.pem"]), "\(dir)/leaf.pem: OK")
        XCTAssertEqual(try openssl(["verify", "-CAfile", "\(dir)/roots.pem", "\(dir)/new-leaf.pem"]), "\(dir)/new-leaf.pem: OK")
        let newRoot = try openssl(["pkey", "-in", "\(dir)/new-root.key", "-pubout"])
        let activeRoot = try XCTUnwrap(after["Roots"]?.arrayValue?.first { $0["Active"] == .bool(true) }?["RootCert"]?.stringValue)
        try activeRoot.write(toFile: "\(dir)/active-root.pem", atomically: true, encoding: .utf8)
        XCTAssertEqual(try openssl(["x509", "-in", "\(dir)/active-root.pem", "-noout", "-pubkey"]), newRoot,
                       "the active root is the operator's key")
        let configuration = try await registry.json("/v1/connect/ca/configuration")
        XCTAssertEqual(configuration["Config"]?["LeafCertTTL"], .string("24h"))
        XCTAssertNil(configuration["Config"]?["PrivateKey"], "the key is not shown back")
        let validity = try XCTUnwrap(ISO8601DateFormatter().date(from: newLeaf["ValidBefore"]?.stringValue ?? ""))
        XCTAssertEqual(validity.timeIntervalSinceNow, 24 * 3600, accuracy: 120, "leaves follow the new LeafCertTTL")
    }

    func testAMalformedCAConfigurationIsRefusedAndTheOneInForceStays() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let dir = try temporaryDirectory(self)
        let before = try await registry.json("/v1/connect/ca/configuration")
        _ = try openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "\(dir)/rsa.key"])
        let rsa = try String(contentsOfFile: "\(dir)/rsa.key", encoding: .utf8)
        let cases: [(String, String)] = [
            (#"{"Provider":"vault","Config":{}}"#, "unsupported CA provider"),
            (#"{"Provider":"consul","Config":{"LeafCertTTL":"soon"}}"#, "LeafCertTTL must be a duration"),
            (#"{"Provider":"consul","Config":{"LeafCertTTL":"1s"}}"#, "LeafCertTTL must be between"),
            (#"{"Provider":"consul","Config":{"PrivateKeyBits":4096}}"#, "PrivateKeyBits must be 256"),
            (#"{"Provider":"consul","Config":{"PrivateKey":"not a key"}}"#, "PrivateKey must be a PEM-encoded ECDSA P-256 key"),
            (JSON.object(JSONObject([("Provider", .string("consul")), ("Config", .object(JSONObject([("PrivateKey", .string(rsa))])))])).text,
             "PrivateKey must be a PEM-encoded ECDSA P-256 key"),
            (#"{"Provider":"consul","Config":[]}"#, "Request decode failed"),
            ("{", "Request decode failed"),
        ]
        for (body, message) in cases {
            let refused = try await registry.put("/v1/connect/ca/configuration", body)
            XCTAssertEqual(refused.status, 400, body)
            XCTAssertTrue(String(decoding: refused.body, as: UTF8.self).contains(message), String(decoding: refused.body, as: UTF8.self))
        }
        let after = try await registry.json("/v1/connect/ca/configuration")
        XCTAssertEqual(after, before)
        let roots = try await registry.json("/v1/connect/ca/roots")
        XCTAssertEqual(roots["Roots"]?.arrayValue?.count, 1)
    }

    // MARK: Helpers

    private func write(_ leaf: JSON, root: JSON, to dir: String) throws {
        try (leaf["CertPEM"]?.stringValue ?? "").write(toFile: "\(dir)/leaf.pem", atomically: true, encoding: .utf8)
        try (leaf["PrivateKeyPEM"]?.stringValue ?? "").write(toFile: "\(dir)/leaf.key", atomically: true, encoding: .utf8)
        try (root["RootCert"]?.stringValue ?? "").write(toFile: "\(dir)/roots.pem", atomically: true, encoding: .utf8)
    }

    private func writeRoots(_ roots: JSON, to path: String) throws {
        let pems = (roots["Roots"]?.arrayValue ?? []).compactMap { $0["RootCert"]?.stringValue }
        try pems.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Runs `openssl` and returns its trimmed output; a failure fails with what it printed.
    private func openssl(_ arguments: [String]) throws -> String {
        let (status, output) = try runToEnd("/usr/bin/openssl", arguments)
        XCTAssertEqual(status, 0, "openssl \(arguments.joined(separator: " ")): \(output)")
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
