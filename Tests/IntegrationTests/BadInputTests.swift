import TrellisCore
import XCTest

final class BadInputTests: XCTestCase {
    func testMalformedRequestsGetClearFourHundredsAndStoreNothing() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"keep","Port":1}"#)
        let before = try await registry.json("/v1/catalog/services")
        let cases: [(String, String, Int)] = [
            ("/v1/agent/service/register", #"{"Name": "x", "Port": "eighty"}"#, 400),
            ("/v1/agent/service/register", #"{"Name": "x""#, 400),
            ("/v1/agent/service/register", "", 400),
            ("/v1/agent/service/register", #"["not", "an", "object"]"#, 400),
            ("/v1/agent/service/register", #"{"Port": 80}"#, 400),
            ("/v1/agent/service/register", #"{"Name": "x", "Port": 70000}"#, 400),
            ("/v1/agent/service/register", #"{"Name": "x", "Address": "0.0.0.0"}"#, 400),
            ("/v1/agent/service/register", #"{"Name": "x", "Check": {"TTL": "ten seconds"}}"#, 400),
            ("/v1/agent/service/register", #"{"Name": "x", "Check": {"HTTP": "http://127.0.0.1:1/"}}"#, 400),
            ("/v1/agent/service/register", #"{"Name": "x", "Check": {"Args": ["/bin/true"], "Interval": "10s"}}"#, 400),
            ("/v1/agent/service/register", #"{"Name": "x", "Check": {"TTL": "10s", "Status": "great"}}"#, 400),
            ("/v1/agent/service/register", #"{"Name": "x", "Tags": "v1"}"#, 400),
            ("/v1/agent/service/register", #"{"Name": "x", "Meta": {"k": 1}}"#, 400),
            ("/v1/catalog/register", #"{"Address": "10.0.0.1"}"#, 400),
            ("/v1/catalog/register", #"{"Node": "n", "Service": {"Service": "s"}}"#, 400),
            ("/v1/agent/check/register", #"{"TTL": "10s"}"#, 400),
        ]
        for (path, body, expected) in cases {
            let (status, headers, reply) = try await registry.put(path, body.isEmpty ? nil : body)
            XCTAssertEqual(status, expected, "\(path) \(body) → \(String(decoding: reply, as: UTF8.self))")
            XCTAssertFalse(reply.isEmpty, "an error says what was wrong")
            XCTAssertTrue(headers["content-type"]?.hasPrefix("text/plain") ?? false)
        }
        let v1 = try await registry.json("/v1/catalog/services")
        XCTAssertEqual(v1, before)
    }

    func testOversizedBodyIs413AndServerStaysUp() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let huge = "{\"Name\":\"x\",\"Meta\":{\"k\":\"" + String(repeating: "a", count: 2 << 20) + "\"}}"
        let (status, _, _) = try await registry.put("/v1/agent/service/register", huge)
        XCTAssertEqual(status, 413)
        let v2 = try await registry.get("/v1/status/leader").status
        XCTAssertEqual(v2, 200)
    }

    func testQueryParameterErrors() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let v3 = try await registry.get("/v1/health/service/x?index=abc").status
        XCTAssertEqual(v3, 400)
        let v4 = try await registry.get("/v1/health/service/x?index=1&wait=soon").status
        XCTAssertEqual(v4, 400)
        let v5 = try await registry.get("/v1/health/service/x?passing=maybe").status
        XCTAssertEqual(v5, 400)
        let v6 = try await registry.get("/v1/health/state/purple").status
        XCTAssertEqual(v6, 400)
        let v7 = try await registry.get("/v1/catalog/services?filter=Service%20%3D%3D").status
        XCTAssertEqual(v7, 400)
        let (dcStatus, _, dcBody) = try await registry.get("/v1/catalog/services?dc=elsewhere")
        XCTAssertEqual(dcStatus, 500)
        XCTAssertEqual(String(decoding: dcBody, as: UTF8.self), "No path to datacenter")
        let v8 = try await registry.get("/v1/catalog/services?dc=dc1").status
        XCTAssertEqual(v8, 200)
        let v9 = try await registry.get("/v1/nothing/here").status
        XCTAssertEqual(v9, 404)
        let v10 = try await registry.client.send("DELETE", "/v1/agent/services").status
        XCTAssertEqual(v10, 405)
        let v11 = try await registry.get("/v1/agent/service/register").status
        XCTAssertEqual(v11, 405)
    }
}

extension BadInputTests {
    /// The endpoints added for Consul fidelity refuse malformed bodies with a 4xx and store nothing.
    func testMalformedTransactionsConfigEntriesCoordinatesAndEventsChangeNothing() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let before = try await registry.get("/v1/catalog/nodes")
        let cases: [(String, String, Int)] = [
            ("/v1/txn", #"[{"Node":{"Verb":"frobnicate","Node":{"Node":"n"}}}]"#, 400),
            ("/v1/txn", #"[{"Service":{"Verb":"set","Node":"n","Service":{"Port":"eighty"}}}]"#, 400),
            ("/v1/txn", #"[{"Check":{"Verb":"set","Check":"nope"}}]"#, 400),
            ("/v1/txn", #"[{"Nothing":{}}]"#, 400),
            ("/v1/txn", #"[{"KV":{"Verb":"set","Key":"k","Value":"dg==","Flags":-5}}]"#, 400),
            ("/v1/config", #"{"Name":"x"}"#, 400),
            ("/v1/config", #"{"Kind":"ingress-gateway"}"#, 400),
            ("/v1/config", #"{"Kind":"ingress-gateway","Name":"a/b"}"#, 400),
            ("/v1/config", #"{"Kind":7,"Name":"x"}"#, 400),
            ("/v1/config?cas=abc", #"{"Kind":"ingress-gateway","Name":"x"}"#, 400),
            ("/v1/coordinate/update", #"{"Node":"n","Coord":{"Vec":[1,2,3,4,5,6,7,"x"]}}"#, 400),
            ("/v1/coordinate/update", #"{"Coord":{"Vec":[0,0,0,0,0,0,0,0]}}"#, 400),
            ("/v1/operator/autopilot/configuration?cas=x", #"{"CleanupDeadServers":false}"#, 400),
            ("/v1/agent/service/register", #"{"Name":"x","Connect":{"SidecarService":{"Port":"twenty"}}}"#, 400),
            ("/v1/agent/service/register", #"{"Name":"x","Proxy":"direct"}"#, 400),
        ]
        for (path, body, expected) in cases {
            let (status, _, reply) = try await registry.put(path, body)
            XCTAssertEqual(status, expected, "\(path) \(body) → \(String(decoding: reply, as: UTF8.self))")
            XCTAssertFalse(reply.isEmpty, "an error says what was wrong")
        }
        let after = try await registry.get("/v1/catalog/nodes")
        XCTAssertEqual(after.body, before.body)
        let entries = try await registry.json("/v1/config/ingress-gateway")
        XCTAssertEqual(entries, .array([]))
        let kv = try await registry.get("/v1/kv/k")
        XCTAssertEqual(kv.status, 404)
        let autopilot = try await registry.json("/v1/operator/autopilot/configuration")
        XCTAssertEqual(autopilot["CleanupDeadServers"], .bool(true))
        let up = try await registry.get("/v1/status/leader")
        XCTAssertEqual(up.status, 200)
    }
}
