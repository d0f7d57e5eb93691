import ConsulClient
import Foundation
import Synchronization
import TrellisCore
import XCTest

/// Mutual TLS between real sidecars with the registry's certificates, checked also with `openssl s_client`.
final class MeshTLSTests: XCTestCase {
    /// A registry, `db` (a scripted server behind a sidecar in `mode`) and `web`'s sidecar with `db` as its upstream.
    private func mesh(_ mode: String) async throws -> (registry: RegistryUnderTest, db: SidecarUnderTest, web: SidecarUnderTest) {
        let registry = try await RegistryUnderTest.start(self)
        let server = try await ScriptedHTTPServer(self, keepAlive: true)
        let db = try await SidecarUnderTest(self, registry: registry, service: "db", localPort: server.port, extra: ["--mtls", mode])
        let web = try await SidecarUnderTest(self, registry: registry, service: "web", upstreams: ["db"], localPort: try freeLoopbackPort())
        try await eventually(timeout: 20, "db's leaf is installed and web found db") {
            let config = try await db.admin("/config")
            let clusters = try await web.admin("/clusters")
            return config.contains("\"serial\"") && clusters.contains("\"mtls\": true")
        }
        return (registry, db, web)
    }

    /// Writes the registry's roots and a leaf for `service` into `dir`; returns the leaf's SPIFFE ID.
    private func credentials(_ registry: RegistryUnderTest, service: String, in dir: String) async throws -> String {
        let leaf = try await registry.json("/v1/agent/connect/ca/leaf/\(service)")
        try (leaf["CertPEM"]?.stringValue ?? "").write(toFile: "\(dir)/\(service).pem", atomically: true, encoding: .utf8)
        try (leaf["PrivateKeyPEM"]?.stringValue ?? "").write(toFile: "\(dir)/\(service).key", atomically: true, encoding: .utf8)
        let roots = try await registry.get("/v1/connect/ca/roots?pem=true")
        try Data(roots.body).write(to: URL(fileURLWithPath: "\(dir)/roots.pem"))
        return leaf["ServiceURI"]?.stringValue ?? ""
    }

    /// One HTTP/1.1 request through `openssl s_client` to `port`; what came back (empty when refused).
    private func sClient(port: Int, _ arguments: [String]) throws -> String {
        let script = "printf 'GET /hello HTTP/1.1\\r\\nHost: db\\r\\nConnection: close\\r\\n\\r\\n' | "
            + "timeout 10 openssl s_client -connect 127.0.0.1:\(port) -quiet -verify_return_error \(arguments.joined(separator: " ")) 2>&1"
        return try runToEnd("/bin/sh", ["-c", script]).output
    }

    func testAnAllowedCallCrossesMutualTLSAndADeniedOneGets403() async throws {
        let (registry, db, web) = try await mesh("strict")
        let allowed = try await web.upstream("db", "/hello")
        XCTAssertEqual(allowed.status, 200)
        let handshakes = try await db.metric(#"trellis_sidecar_tls_handshakes_total{direction="inbound",resumed="false"}"#)
        XCTAssertGreaterThanOrEqual(handshakes ?? 0, 1)

        _ = try await registry.put("/v1/connect/intentions/exact?source=web&destination=db", #"{"Action":"deny"}"#)
        try await eventually(timeout: 5, "the deny reaches db's sidecar within seconds") {
            (try await web.upstream("db", "/hello")).status == 403
        }
        let denied = try await web.upstream("db", "/hello")
        XCTAssertEqual(denied.headers["x-trellis-error"], "intention_denied")
        let count = try await db.metric(#"trellis_sidecar_authorization_denials_total{source="web"}"#)
        XCTAssertGreaterThanOrEqual(count ?? 0, 1)

        // Any other caller is still allowed (the registry's default), through the real openssl client.
        let dir = try temporaryDirectory(self)
        let uri = try await credentials(registry, service: "api", in: dir)
        XCTAssertTrue(uri.hasSuffix("/svc/api"))
        let answer = try sClient(port: db.port, ["-cert", "\(dir)/api.pem", "-key", "\(dir)/api.key", "-CAfile", "\(dir)/roots.pem"])
        XCTAssertTrue(answer.contains("HTTP/1.1 200"), answer)
        try await eventually(timeout: 5, "the access log names the caller") {
            db.child.output.contains { $0.contains(#""peer_identity":"\#(uri)""#) }
        }
        let config = try await db.admin("/config")
        XCTAssertTrue(config.contains("\"mode\": \"strict\""), config)
    }

    func testAStrictListenerRefusesPlaintextAndStrangersAndAPermissiveOneTakesBoth() async throws {
        let (registry, db, _) = try await mesh("strict")
        let dir = try temporaryDirectory(self)
        _ = try await credentials(registry, service: "api", in: dir)

        let plaintext = try runToEnd("/usr/bin/curl", ["-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(db.port)/"])
        XCTAssertEqual(plaintext.output, "000", "a plaintext caller of a strict listener gets no answer")
        let noCertificate = try sClient(port: db.port, ["-CAfile", "\(dir)/roots.pem"])
        XCTAssertFalse(noCertificate.contains("HTTP/1.1 200"), noCertificate)
        // A certificate of another CA, with the right SPIFFE ID.
        let trustDomain = try await registry.json("/v1/connect/ca/roots")["TrustDomain"]?.stringValue ?? ""
        let forged = try runToEnd("/bin/sh", ["-c", """
            cd \(dir) && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=api \
              -addext subjectAltName=URI:spiffe://\(trustDomain)/ns/default/dc/dc1/svc/api -keyout forged.key -out forged.pem 2>&1
            """])
        XCTAssertEqual(forged.status, 0, forged.output)
        let stranger = try sClient(port: db.port, ["-cert", "\(dir)/forged.pem", "-key", "\(dir)/forged.key", "-CAfile", "\(dir)/roots.pem"])
        XCTAssertFalse(stranger.contains("HTTP/1.1 200"), stranger)
        try await eventually(timeout: 5, "refusals are counted by reason") {
            let metrics = try await db.admin("/metrics")
            return metrics.contains(#"tls_handshake_failures_total{direction="inbound",reason="plaintext"}"#)
                && metrics.contains(#"reason="no_certificate""#) && metrics.contains(#"reason="unknown_ca""#)
        }

        let (_, permissive, web) = try await mesh("permissive")
        let direct = try runToEnd("/usr/bin/curl", ["-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(permissive.port)/"])
        XCTAssertEqual(direct.output, "200", "plaintext still works on a permissive listener")
        let meshed = try await web.upstream("db", "/")
        XCTAssertEqual(meshed.status, 200)
        let handshakes = try await permissive.metric(#"trellis_sidecar_tls_handshakes_total{direction="inbound",resumed="false"}"#)
        XCTAssertGreaterThanOrEqual(handshakes ?? 0, 1, "the sidecar caller used mutual TLS")
    }

    func testACallerRefusesAnInstanceThatPresentsAnotherServicesIdentity() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let server = try await ScriptedHTTPServer(self, keepAlive: true)
        // "payments" registers under db's name: a caller of db must not accept its certificate.
        let impostor = try await SidecarUnderTest(self, registry: registry, service: "payments", localPort: server.port,
                                                  extra: ["--mtls", "strict"])
        try await eventually(timeout: 20, "the impostor has its leaf") { (try await impostor.admin("/config")).contains("\"serial\"") }
        let registered = try await registry.put("/v1/catalog/register", JSON.object(JSONObject([
            ("Node", .string("elsewhere")), ("Address", .string("127.0.0.1")),
            ("Service", .object(JSONObject([("Service", .string("db")), ("Port", .int(Int64(impostor.port))),
                                            ("Meta", .stringMap(["trellis_mtls": "strict"]))]))),
        ])).text)
        XCTAssertEqual(registered.status, 200)
        let web = try await SidecarUnderTest(self, registry: registry, service: "web", upstreams: ["db"], localPort: try freeLoopbackPort())
        try await eventually(timeout: 20, "web found the db instance") { (try await web.admin("/clusters")).contains("\"mtls\": true") }
        let answer = try await web.upstream("db", "/")
        XCTAssertNotEqual(answer.status, 200)
        try await eventually(timeout: 5, "the refusal is counted") {
            (try await web.admin("/metrics")).contains(#"tls_handshake_failures_total{direction="outbound",reason="wrong_identity"}"#)
        }
    }

    func testARegistryThatCannotBeReachedLeavesTheLeafInForceAndIsCounted() async throws {
        let (registry, db, web) = try await mesh("strict")
        let before = try await serial(db)
        registry.child?.kill9()
        try await eventually(timeout: 15, "the failed renewals are counted") {
            (try await db.metric("trellis_sidecar_tls_leaf_renewal_failures_total") ?? 0) > 0
        }
        let answer = try await web.upstream("db", "/")
        XCTAssertEqual(answer.status, 200, "mutual TLS goes on with the leaf in force")
        let during = try await serial(db)
        XCTAssertEqual(during, before)
    }

    /// db's current leaf serial, from its sidecar's `/config`.
    private func serial(_ sidecar: SidecarUnderTest) async throws -> String? {
        try JSON.parse(Array(try await sidecar.admin("/config").utf8))["tls"]?["leaf"]?["serial"]?.stringValue
    }

    func testRootRotationAndLeafRenewalUnderASteadyLoopFailNoRequestAndExpiredLeavesAreRefused() async throws {
        let (registry, db, web) = try await mesh("strict")
        let dir = try temporaryDirectory(self)
        let trustDomain = try await registry.json("/v1/connect/ca/roots")["TrustDomain"]?.stringValue ?? ""
        // The operator's new root, and a leaf it signed that expired long ago.
        let made = try runToEnd("/bin/sh", ["-c", """
            set -e; cd \(dir)
            openssl ecparam -name prime256v1 -genkey -noout -out root.key
            openssl req -x509 -new -key root.key -subj /CN=operator-root -days 30 -out root.pem \\
              -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \\
              -addext subjectAltName=URI:spiffe://\(trustDomain)
            openssl ecparam -name prime256v1 -genkey -noout -out old.key
            openssl req -new -key old.key -subj /CN=api -out old.csr
            mkdir ca; touch ca/index.txt; echo 01 > ca/serial
            printf '[ca]\\ndefault_ca=d\\n[d]\\ndir=ca\\ndatabase=ca/index.txt\\nserial=ca/serial\\nnew_certs_dir=ca\\ndefault_md=sha256\\npolicy=p\\n[p]\\ncommonName=supplied\\n[ext]\\nsubjectAltName=URI:spiffe://\(trustDomain)/ns/default/dc/dc1/svc/api\\nextendedKeyUsage=clientAuth,serverAuth\\n' > ca.cnf
            openssl ca -batch -config ca.cnf -cert root.pem -keyfile root.key -in old.csr -out old.pem \\
              -startdate 20200101000000Z -enddate 20200201000000Z -extensions ext 2>&1
            """])
        XCTAssertEqual(made.status, 0, made.output)

        // A steady loop of requests through web → db while the root rotates and the leaves renew.
        let running = StopFlag()
        let loop = Task { () -> [Int] in
            var statuses: [Int] = []
            while !running.isSet {
                statuses.append((try? await web.upstream("db", "/")).map(\.status) ?? 0)
                try? await Task.sleep(for: .milliseconds(20))
            }
            return statuses
        }
        let first = try await serial(db)
        let config = JSON.object(JSONObject([("Provider", .string("consul")), ("Config", .object(JSONObject([
            ("LeafCertTTL", .string("1m")),
            ("PrivateKey", .string(try String(contentsOfFile: "\(dir)/root.key", encoding: .utf8))),
            ("RootCert", .string(try String(contentsOfFile: "\(dir)/root.pem", encoding: .utf8))),
        ])))]))
        let rotated = try await registry.put("/v1/connect/ca/configuration", config.text)
        XCTAssertEqual(rotated.status, 200, String(decoding: rotated.body, as: UTF8.self))
        var rotatedSerial: String?
        try await eventually(timeout: 10, "db's sidecar installs the leaf of the new root") {
            rotatedSerial = try await serial(db)
            return rotatedSerial != first
        }
        // The new leaves live a minute: the sidecar has the next one at about half of it.
        try await eventually(timeout: 60, "db's sidecar renews its one-minute leaf") {
            let now = try await serial(db)
            return now != rotatedSerial && now != first
        }
        running.set()
        let statuses = await loop.value
        XCTAssertGreaterThan(statuses.count, 100)
        XCTAssertEqual(statuses.filter { $0 != 200 }, [], "no request failed across the rotation and the renewal")

        let expired = try sClient(port: db.port, ["-cert", "\(dir)/old.pem", "-key", "\(dir)/old.key", "-CAfile", "\(dir)/root.pem"])
        XCTAssertFalse(expired.contains("HTTP/1.1 200"), expired)
        try await eventually(timeout: 5, "the expired leaf is counted") {
            (try await db.admin("/metrics")).contains(#"tls_handshake_failures_total{direction="inbound",reason="expired_certificate"}"#)
        }
    }
}

/// A flag one task sets and another polls.
final class StopFlag: Sendable {
    private let state = Mutex(false)
    var isSet: Bool { state.withLock { $0 } }
    func set() { state.withLock { $0 = true } }
}
