import Foundation
import TrellisCore
import XCTest

/// Intentions through Consul's HTTP API and `trellis intention`, against the real registry.
final class IntentionTests: XCTestCase {
    private func text(_ response: (status: Int, headers: [String: String], body: [UInt8])) -> String {
        String(decoding: response.body, as: UTF8.self)
    }

    func testIntentionsAreWrittenByNameAndEvaluatedWithConsulsPrecedence() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let exact = "/v1/connect/intentions/exact"
        for (source, destination, body) in [("web", "db", #"{"Action":"deny"}"#), ("*", "db", #"{"Action":"allow","Description":"any caller"}"#),
                                             ("batch", "*", #"{"Action":"deny"}"#), ("*", "*", #"{"Action":"allow"}"#)] {
            let stored = try await registry.put("\(exact)?source=\(source)&destination=\(destination)", body)
            XCTAssertEqual(text(stored), "true")
        }

        let list = try await registry.json("/v1/connect/intentions")
        let order = (list.arrayValue ?? []).map { "\($0["SourceName"]?.stringValue ?? "")>\($0["DestinationName"]?.stringValue ?? "")" }
        XCTAssertEqual(order, ["web>db", "*>db", "batch>*", "*>*"])
        XCTAssertEqual((list.arrayValue ?? []).map { $0["Precedence"] }, [.int(9), .int(8), .int(6), .int(5)])
        let one = try await registry.json("\(exact)?source=*&destination=db")
        XCTAssertEqual(one["Description"], .string("any caller"))
        XCTAssertEqual(one["SourceNS"], .string("default"))
        XCTAssertEqual(one["SourceType"], .string("consul"))

        for (source, destination, allowed) in [("web", "db", false), ("api", "db", true), ("batch", "db", true),
                                                ("batch", "cache", false), ("api", "cache", true)] {
            let check = try await registry.json("/v1/connect/intentions/check?source=\(source)&destination=\(destination)")
            XCTAssertEqual(check["Allowed"], .bool(allowed), "\(source) => \(destination)")
        }
        let matched = try await registry.json("/v1/connect/intentions/match?by=destination&name=db")
        XCTAssertEqual(matched["db"]?.arrayValue?.map { $0["SourceName"] }, [.string("web"), .string("*"), .string("batch"), .string("*")])
        let bySource = try await registry.json("/v1/connect/intentions/match?by=source&name=batch")
        XCTAssertEqual(bySource["batch"]?.arrayValue?.map { $0["DestinationName"] }, [.string("db"), .string("*"), .string("*")])

        let denied = try await registry.client.send("POST", "/v1/agent/connect/authorize", body: Array(
            #"{"Target":"db","ClientCertURI":"spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web"}"#.utf8))
        let decision = try JSON.parse(denied.body)
        XCTAssertEqual(decision["Authorized"], .bool(false))
        XCTAssertTrue(decision["Reason"]?.stringValue?.hasPrefix("Matched L4 intention: DENY default/web => default/db") == true)

        // Blocking readers of intentions wake on a change.
        let current = try await registry.get("/v1/connect/intentions")
        let index = try XCTUnwrap(current.headers["x-consul-index"])
        let waiting = Task { try await registry.get("/v1/connect/intentions?index=\(index)&wait=20s") }
        try await Task.sleep(for: .milliseconds(200))
        let deleted = try await registry.client.send("DELETE", "\(exact)?source=web&destination=db")
        XCTAssertEqual(text(deleted), "true")
        let woken = try await waiting.value
        XCTAssertNotEqual(woken.headers["x-consul-index"], index)
        XCTAssertEqual((try JSON.parse(woken.body)).arrayValue?.count, 3)
        let missing = try await registry.get("\(exact)?source=web&destination=db")
        XCTAssertEqual(missing.status, 404)
        XCTAssertEqual(text(missing), "Intention not found")

        try await registry.crashAndRestart()
        let kept = try await registry.json("/v1/connect/intentions")
        XCTAssertEqual(kept.arrayValue?.count, 3)
        let allowed = try await registry.json("/v1/connect/intentions/check?source=web&destination=db")
        XCTAssertEqual(allowed["Allowed"], .bool(true))
    }

    func testADefaultDenyPolicyRefusesWhatNoIntentionAllows() async throws {
        let registry = RegistryUnderTest(dataDir: try temporaryDirectory(self), arguments: ["--default-intention-policy", "deny"])
        try await registry.start()
        addTeardownBlock { registry.child?.kill9() }
        _ = try await registry.put("/v1/connect/intentions/exact?source=web&destination=db", #"{"Action":"allow"}"#)
        let allowed = try await registry.json("/v1/connect/intentions/check?source=web&destination=db")
        XCTAssertEqual(allowed["Allowed"], .bool(true))
        let unmatched = try await registry.client.send("POST", "/v1/agent/connect/authorize", body: Array(
            #"{"Target":"db","ClientCertURI":"spiffe://x.consul/ns/default/dc/dc1/svc/batch"}"#.utf8))
        let decision = try JSON.parse(unmatched.body)
        XCTAssertEqual(decision["Authorized"], .bool(false))
        XCTAssertEqual(decision["Reason"], .string("Default intention policy"))
        let bad = try runToEnd(TrellisBinary.path, ["registry", "--default-intention-policy", "maybe", "--data-dir", try temporaryDirectory(self)])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.output.contains("default_intention_policy must be allow or deny"), bad.output)
    }

    func testIntentionsCreatedWithAnIDAndBadInput() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let created = try await registry.client.send("POST", "/v1/connect/intentions", body: Array(
            #"{"SourceName":"web","DestinationName":"db","SourceType":"consul","Action":"allow","Meta":{"team":"a"}}"#.utf8))
        XCTAssertEqual(created.status, 200, text(created))
        let id = try XCTUnwrap(try JSON.parse(created.body)["ID"]?.stringValue)
        let read = try await registry.json("/v1/connect/intentions/\(id)")
        XCTAssertEqual(read["Meta"]?["team"], .string("a"))
        XCTAssertNotEqual(read["CreatedAt"], .string("0001-01-01T00:00:00Z"))
        let duplicate = try await registry.client.send("POST", "/v1/connect/intentions", body: Array(
            #"{"SourceName":"web","DestinationName":"db","Action":"deny"}"#.utf8))
        XCTAssertEqual(duplicate.status, 500)
        XCTAssertTrue(text(duplicate).hasPrefix("duplicate intention found"), text(duplicate))
        let updated = try await registry.put("/v1/connect/intentions/\(id)", #"{"SourceName":"web","DestinationName":"db","Action":"deny"}"#)
        XCTAssertEqual(updated.status, 200, text(updated))
        let byName = try await registry.json("/v1/connect/intentions/exact?source=web&destination=db")
        XCTAssertEqual(byName["Action"], .string("deny"))
        XCTAssertEqual(byName["ID"], .string(id))
        let removed = try await registry.client.send("DELETE", "/v1/connect/intentions/\(id)")
        XCTAssertEqual(removed.status, 200)
        let gone = try await registry.get("/v1/connect/intentions/\(id)")
        XCTAssertEqual(gone.status, 404)

        let allow = #"{"Action":"allow"}"#
        let refusals: [(String, String, String?, String)] = [
            ("PUT", "/v1/connect/intentions/exact?destination=db", allow, "required query parameter 'source' not set"),
            ("PUT", "/v1/connect/intentions/exact?source=web", allow, "required query parameter 'destination' not set"),
            ("PUT", "/v1/connect/intentions/exact?source=we*&destination=db", allow, "wildcard character '*' cannot be used with partial values"),
            ("PUT", "/v1/connect/intentions/exact?source=web&destination=db", #"{"Action":"maybe"}"#, "Action must be set to 'allow' or 'deny'"),
            ("PUT", "/v1/connect/intentions/exact?source=other/web&destination=db", allow, "namespace \"other\" does not exist"),
            ("GET", "/v1/connect/intentions/match?name=db", nil, "required query parameter 'by' not set"),
            ("GET", "/v1/connect/intentions/match?by=sideways&name=db", nil, "'by' parameter must be one of 'source' or 'destination'"),
            ("GET", "/v1/connect/intentions/match?by=source", nil, "required query parameter 'name' not set"),
            ("GET", "/v1/connect/intentions/check?source=web", nil, "required query parameter 'destination' not set"),
            ("POST", "/v1/agent/connect/authorize", #"{"ClientCertURI":"spiffe://x.consul/ns/default/dc/dc1/svc/web"}"#,
             "Target service must be specified"),
            ("POST", "/v1/agent/connect/authorize", #"{"Target":"db","ClientCertURI":"https://example.com/web"}"#,
             "ClientCertURI must be a valid Service identifier"),
        ]
        for (method, path, body, message) in refusals {
            let refused = try await registry.client.send(method, path, body: body.map { Array($0.utf8) })
            XCTAssertEqual(refused.status, 400, "\(method) \(path): \(text(refused))")
            XCTAssertTrue(text(refused).contains(message), "\(method) \(path): \(text(refused))")
        }
        let tooLong = String(repeating: "d", count: 513)
        let long = try await registry.put("/v1/connect/intentions/exact?source=web&destination=db",
                                          #"{"Action":"allow","Description":"\#(tooLong)"}"#)
        XCTAssertEqual(long.status, 400)
        XCTAssertTrue(text(long).contains("Description exceeds maximum length 512"))
        let none = try await registry.json("/v1/connect/intentions")
        XCTAssertEqual(none, .array([]), "nothing refused was stored")
    }

    func testTheIntentionCommandCreatesListsChecksAndDeletes() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let flags = ["--registry", registry.address]
        let created = try runToEnd(TrellisBinary.path, ["intention", "create", "--deny"] + flags + ["web", "db"])
        XCTAssertEqual(created.status, 0, created.output)
        XCTAssertEqual(created.output, "Created: web => db (deny)\n")
        let again = try runToEnd(TrellisBinary.path, ["intention", "create"] + flags + ["web", "db"])
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.output.contains("exists already; use --replace"), again.output)
        let wildcard = try runToEnd(TrellisBinary.path, ["intention", "create", "--description", "default"] + flags + ["*", "db"])
        XCTAssertEqual(wildcard.status, 0, wildcard.output)

        let list = try runToEnd(TrellisBinary.path, ["intention", "list"] + flags)
        let lines = list.output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        XCTAssertEqual(lines.count, 3, list.output)
        XCTAssertEqual(lines[1].prefix(4), ["web", "deny", "db", "9"])
        XCTAssertEqual(lines[2], ["*", "allow", "db", "8", "default"])

        let denied = try runToEnd(TrellisBinary.path, ["intention", "check"] + flags + ["web", "db"])
        XCTAssertEqual(denied.status, 2)
        XCTAssertEqual(denied.output, "Denied\n")
        let allowed = try runToEnd(TrellisBinary.path, ["intention", "check"] + flags + ["api", "db"])
        XCTAssertEqual(allowed.status, 0)
        XCTAssertEqual(allowed.output, "Allowed\n")

        let replaced = try runToEnd(TrellisBinary.path, ["intention", "create", "--replace"] + flags + ["web", "db"])
        XCTAssertEqual(replaced.output, "Created: web => db (allow)\n")
        let deleted = try runToEnd(TrellisBinary.path, ["intention", "delete"] + flags + ["web", "db"])
        XCTAssertEqual(deleted.output, "Intention deleted.\n")
        let remaining = try await registry.json("/v1/connect/intentions")
        XCTAssertEqual(remaining.arrayValue?.map { $0["SourceName"] }, [.string("*")])
        let partial = try runToEnd(TrellisBinary.path, ["intention", "create"] + flags + ["we*", "db"])
        XCTAssertEqual(partial.status, 1)
        XCTAssertTrue(partial.output.contains("cannot be used with partial values (HTTP 400)"), partial.output)
    }
}
