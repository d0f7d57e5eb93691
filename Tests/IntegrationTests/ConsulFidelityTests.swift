import Foundation
import TrellisCore
import XCTest

/// Requests shaped exactly as HashiCorp's Go client (`github.com/hashicorp/consul/api`) and
/// py-consul send them, answered as Consul answers them.
final class ConsulFidelityTests: XCTestCase {
    /// `CatalogRegistration` as the Go client marshals it: its `AgentService.Weights` is not a
    /// pointer, so every registration carries `{"Passing": 0, "Warning": 0}`.
    static func goCatalogRegistration(node: String, nodeID: String, serviceID: String, service: String) -> String {
        """
        {"ID":"\(nodeID)","Node":"\(node)","Address":"2.2.2.2","TaggedAddresses":null,"NodeMeta":null,"Datacenter":"",
         "Service":{"Kind":"","ID":"\(serviceID)","Service":"\(service)","Tags":null,"Meta":null,"Port":0,"Address":"",
                    "Weights":{"Passing":0,"Warning":0},"EnableTagOverride":false,"Datacenter":""},
         "Check":null,
         "Checks":[{"Node":"","CheckID":"bar","Name":"","Status":"critical","Notes":"","Output":"","ServiceID":"",
                    "ServiceName":"","ServiceTags":null,"Type":"","Namespace":"","Partition":"","ExposedPort":0,
                    "Definition":{"Interval":"5s","Timeout":"10s","DeregisterCriticalServiceAfter":"20s","HTTP":"",
                                  "Header":null,"Method":"","Body":"","TLSServerName":"","TLSSkipVerify":false,
                                  "TCP":"1.1.1.1","TCPUseTLS":false,"UDP":"","GRPC":"","OSService":"","GRPCUseTLS":false},
                    "CreateIndex":0,"ModifyIndex":0},
                   {"Node":"","CheckID":"bor","Name":"","Status":"passing","Type":"udp",
                    "Definition":{"Interval":"5s","Timeout":"","DeregisterCriticalServiceAfter":"","UDP":"1.1.1.1"}}],
         "SkipNodeUpdate":false}
        """
    }

    func testZeroWeightsFromTheGoClientRegisterThroughTheCatalogWithConsulsDefaults() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let nodeID = "6a1c3e3e-8d0a-4b6f-9a6e-1a2b3c4d5e6f"
        let (status, _, body) = try await registry.put("/v1/catalog/register",
            Self.goCatalogRegistration(node: "foo", nodeID: nodeID, serviceID: "foo1", service: "foo"))
        XCTAssertEqual(status, 200, String(decoding: body, as: UTF8.self))
        let entry = try await registry.json("/v1/catalog/service/foo")[0]
        XCTAssertEqual(entry?["ServiceWeights"], .object(JSONObject([("Passing", .int(1)), ("Warning", .int(1))])))
        XCTAssertEqual(entry?["ID"], .string(nodeID))
        XCTAssertEqual(entry?["TaggedAddresses"], .null, "a node registered without tagged addresses has none, as in Consul")
        let udp = try await registry.json("/v1/health/node/foo").arrayValue?.first { $0["CheckID"] == .string("bor") }
        XCTAssertEqual(udp?["Type"], .string("udp"))
        XCTAssertEqual(udp?["Definition"]?["UDP"], .string("1.1.1.1"))

        // Valid weights given to the catalog are kept.
        _ = try await registry.put("/v1/catalog/register", """
            {"Node":"foo","Address":"2.2.2.2","Service":{"ID":"foo2","Service":"foo","Weights":{"Passing":7,"Warning":2}}}
            """)
        let kept = try await registry.json("/v1/catalog/service/foo").arrayValue?.first { $0["ServiceID"] == .string("foo2") }
        XCTAssertEqual(kept?["ServiceWeights"]?["Passing"], .int(7))

        // The agent endpoint validates weights that are given, and defaults those that are not.
        let refused = try await registry.put("/v1/agent/service/register", #"{"Name":"w","Weights":{"Passing":0,"Warning":0}}"#)
        XCTAssertEqual(refused.status, 400)
        XCTAssertEqual(String(decoding: refused.body, as: UTF8.self), "Invalid Weights: Passing must be greater than 0")
        let tooHeavy = try await registry.put("/v1/agent/service/register", #"{"Name":"w","Weights":{"Passing":70000}}"#)
        XCTAssertEqual(String(decoding: tooHeavy.body, as: UTF8.self), "Invalid Weights: DNS Weight must be between 0 and 65535")
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"w"}"#)
        let agent = try await registry.json("/v1/agent/service/w")
        XCTAssertEqual(agent["Weights"], .object(JSONObject([("Passing", .int(1)), ("Warning", .int(1))])))
    }

    func testKVFlagsKeepTheWholeUint64RangeAcrossRestarts() async throws {
        let registry = try await RegistryUnderTest.start(self)
        // 0xe0f69a2baa414de0 is the flag of HashiCorp's semaphore recipe (api/semaphore.go).
        let values: [UInt64] = [0, 42, UInt64(Int64.max), UInt64(Int64.max) + 1, 0xe0f6_9a2b_aa41_4de0, .max]
        for (i, flags) in values.enumerated() {
            let (status, _, body) = try await registry.put("/v1/kv/flags/\(i)?flags=\(flags)", "v")
            XCTAssertEqual(status, 200)
            XCTAssertEqual(String(decoding: body, as: UTF8.self), "true")
        }
        let txn = """
            [{"KV":{"Verb":"set","Key":"flags/txn","Value":"dg==","Flags":\(UInt64.max),"Index":0,"Session":""}}]
            """
        let committed = try await registry.put("/v1/txn", txn)
        XCTAssertEqual(committed.status, 200, String(decoding: committed.body, as: UTF8.self))
        XCTAssertEqual(try JSON.parse(committed.body)["Results"]?[0]?["KV"]?["Flags"], .uint(.max))
        try await registry.crashAndRestart()
        for (i, flags) in values.enumerated() {
            let (_, _, body) = try await registry.get("/v1/kv/flags/\(i)")
            XCTAssertTrue(String(decoding: body, as: UTF8.self).contains("\"Flags\":\(flags),"),
                          "flags \(flags) read back as \(String(decoding: body, as: UTF8.self))")
        }
        let fromTxn = try await registry.json("/v1/kv/flags/txn")
        XCTAssertEqual(fromTxn[0]?["Flags"]?.uint64Value, .max)
        let negative = try await registry.put("/v1/kv/flags/bad?flags=-1", "v")
        XCTAssertEqual(negative.status, 400)
        let tooLarge = try await registry.put("/v1/kv/flags/bad?flags=18446744073709551616", "v")
        XCTAssertEqual(tooLarge.status, 400)
    }

    func testAcquiringWithAnUnknownSessionIsAServerErrorAndReleasingIsFalse() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let acquire = try await registry.put("/v1/kv/lock?acquire=5f2b1c7e-0000-4000-8000-000000000000", "v")
        XCTAssertEqual(acquire.status, 500)
        XCTAssertEqual(String(decoding: acquire.body, as: UTF8.self), #"invalid session "5f2b1c7e-0000-4000-8000-000000000000""#)
        let release = try await registry.put("/v1/kv/lock?release=5f2b1c7e-0000-4000-8000-000000000000", "v")
        XCTAssertEqual(release.status, 200)
        XCTAssertEqual(String(decoding: release.body, as: UTF8.self), "false")
        let absent = try await registry.get("/v1/kv/lock")
        XCTAssertEqual(absent.status, 404, "neither request stored anything")
    }

    /// The transaction of the Go client's `TestAPI_ClientTxn`: KV, node, service and check
    /// operations in one body, first without a session (rolled back), then with one.
    func testMixedTransactionsAsHashiCorpsClientSendsThem() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let nodeID = "0b8c5f5e-3f0a-4c1e-9d55-6a7b8c9d0e1f"
        _ = try await registry.put("/v1/catalog/register",
                                   Self.goCatalogRegistration(node: "foo", nodeID: nodeID, serviceID: "foo1", service: "foo"))
        let session = try await registry.put("/v1/session/create", #"{"NodeChecks":[],"ServiceChecks":null}"#)
        let sessionID = try XCTUnwrap(try JSON.parse(session.body)["ID"]?.stringValue)
        func ops(session: String) -> String {
            """
            [{"KV":{"Verb":"lock","Key":"txn/key","Value":"dGVzdA==","Flags":0,"Index":0,"Session":"\(session)"},
              "Node":null,"Service":null,"Check":null},
             {"KV":{"Verb":"get","Key":"txn/key","Value":null,"Flags":0,"Index":0,"Session":""},"Node":null,"Service":null,"Check":null},
             {"KV":null,"Node":{"Verb":"get","Node":{"ID":"","Node":"foo","Address":"","Datacenter":"","TaggedAddresses":null,
                                                    "Meta":null,"CreateIndex":0,"ModifyIndex":0}},"Service":null,"Check":null},
             {"KV":null,"Node":null,"Service":{"Verb":"get","Node":"foo","Service":{"ID":"foo1","Service":"","Tags":null,
                                                "Meta":null,"Port":0,"Address":"","Weights":{"Passing":0,"Warning":0},
                                                "EnableTagOverride":false}},"Check":null},
             {"KV":null,"Node":null,"Service":null,"Check":{"Verb":"get","Check":{"Node":"foo","CheckID":"bar","Name":"",
                                                "Status":"","Definition":{}}}}]
            """
        }
        let rolledBack = try await registry.put("/v1/txn", ops(session: ""))
        XCTAssertEqual(rolledBack.status, 409)
        let errors = try JSON.parse(rolledBack.body)["Errors"]?.arrayValue ?? []
        XCTAssertEqual(errors.count, 2)
        XCTAssertEqual(errors.first?["OpIndex"], .int(0))
        XCTAssertEqual(errors.first?["What"], .string("missing session"))
        XCTAssertTrue(errors.last?["What"]?.stringValue?.contains("doesn't exist") == true)

        let committed = try await registry.put("/v1/txn", ops(session: sessionID))
        XCTAssertEqual(committed.status, 200, String(decoding: committed.body, as: UTF8.self))
        let results = try JSON.parse(committed.body)["Results"]?.arrayValue ?? []
        XCTAssertEqual(results.count, 5)
        XCTAssertEqual(results[0]["KV"]?["Session"], .string(sessionID))
        XCTAssertEqual(results[0]["KV"]?["LockIndex"], .int(1))
        XCTAssertEqual(results[1]["KV"]?["Value"], .string("dGVzdA=="))
        XCTAssertEqual(results[2]["Node"]?["ID"], .string(nodeID))
        XCTAssertEqual(results[3]["Service"]?["ID"], .string("foo1"))
        XCTAssertEqual(results[4]["Check"]?["Definition"]?["TCP"], .string("1.1.1.1"))
        XCTAssertEqual(results[4]["Check"]?["Type"], .string("tcp"))

        // Writes: a node, a service and a check together; a stale CAS rolls all of them back.
        let nodeIndex = try XCTUnwrap(results[2]["Node"]?["ModifyIndex"]?.intValue)
        let stale = try await registry.put("/v1/txn", """
            [{"Node":{"Verb":"set","Node":{"Node":"bar","Address":"3.3.3.3"}}},
             {"Service":{"Verb":"set","Node":"bar","Service":{"ID":"bar1","Service":"bar","Port":80}}},
             {"Node":{"Verb":"cas","Node":{"Node":"foo","Address":"4.4.4.4","ModifyIndex":\(nodeIndex + 1000)}}}]
            """)
        XCTAssertEqual(stale.status, 409)
        XCTAssertEqual(try JSON.parse(stale.body)["Errors"]?[0]?["What"], .string(#"failed to set node "foo", index is stale"#))
        let noBar = try await registry.get("/v1/catalog/node/bar")
        XCTAssertEqual(String(decoding: noBar.body, as: UTF8.self), "null", "the rolled-back transaction stored nothing")

        let written = try await registry.put("/v1/txn", """
            [{"Node":{"Verb":"set","Node":{"Node":"bar","Address":"3.3.3.3"}}},
             {"Service":{"Verb":"set","Node":"bar","Service":{"ID":"bar1","Service":"bar","Port":80,"Weights":{"Passing":0,"Warning":0}}}},
             {"Check":{"Verb":"set","Check":{"Node":"bar","CheckID":"bar-alive","Name":"alive","Status":"passing","ServiceID":"bar1"}}},
             {"Node":{"Verb":"cas","Node":{"Node":"foo","Address":"4.4.4.4","ModifyIndex":\(nodeIndex)}}},
             {"Session":{"Verb":"delete","Session":{"ID":"\(sessionID)"}}}]
            """)
        XCTAssertEqual(written.status, 200, String(decoding: written.body, as: UTF8.self))
        let healthy = try await registry.json("/v1/health/service/bar?passing")
        XCTAssertEqual(healthy.arrayValue?.count, 1)
        XCTAssertEqual(healthy[0]?["Service"]?["Weights"]?["Passing"], .int(1))
        let moved = try await registry.json("/v1/catalog/node/foo")
        XCTAssertEqual(moved["Node"]?["Address"], .string("4.4.4.4"))
        let released = try await registry.json("/v1/kv/txn/key")
        XCTAssertNil(released[0]?["Session"], "deleting the session in the transaction released its lock")

        let own = try await registry.put("/v1/txn", #"[{"Node":{"Verb":"delete","Node":{"Node":"\#(registry.node)"}}}]"#)
        XCTAssertEqual(own.status, 409)
        let unknown = try await registry.put("/v1/txn", #"[{"Session":{"Verb":"renew","Session":{"ID":"x"}}}]"#)
        XCTAssertEqual(unknown.status, 400)
    }
}

extension ConsulFidelityTests {
    func testFiltersSeeWhatConsulsFiltersSee() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/catalog/register", """
            {"Node":"db1","Address":"10.0.0.1","NodeMeta":{"env":"prod"},"Service":{"ID":"pg","Service":"postgres","Tags":["prod","primary"]}}
            """)
        _ = try await registry.put("/v1/catalog/register", """
            {"Node":"db2","Address":"10.0.0.2","NodeMeta":{"env":"dev"},"Service":{"ID":"pg","Service":"postgres","Tags":["dev"]}}
            """)
        _ = try await registry.put("/v1/catalog/register", """
            {"Node":"db2","Address":"10.0.0.2","NodeMeta":{"env":"dev"},"Service":{"ID":"cache","Service":"redis","Tags":["dev"]}}
            """)
        func get(_ path: String, filter: String) async throws -> (Int, JSON?) {
            let escaped = filter.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? filter
            let (status, _, body) = try await registry.get(path + (path.contains("?") ? "&" : "?") + "filter=" + escaped)
            return (status, try? JSON.parse(body))
        }
        // /v1/catalog/services filters the instances behind each name.
        let prod = try await get("/v1/catalog/services", filter: #""prod" in ServiceTags"#)
        XCTAssertEqual(prod.1, .object(JSONObject([("postgres", .strings(["prod", "primary"]))])))
        let byMeta = try await get("/v1/catalog/services", filter: #"NodeMeta["env"] == "dev""#)
        XCTAssertEqual(byMeta.1, .object(JSONObject([("postgres", .strings(["dev"])), ("redis", .strings(["dev"]))])))
        // /v1/catalog/node/:node filters its Services.
        let node = try await get("/v1/catalog/node/db2", filter: #"Service == "redis""#)
        XCTAssertEqual(node.1?["Services"]?.objectValue?.pairs.map(\.key), ["cache"])
        XCTAssertEqual(node.1?["Node"]?["Node"], .string("db2"))
        let list = try await get("/v1/catalog/node-services/db2", filter: #"Service == "redis""#)
        XCTAssertEqual(list.1?["Services"]?.arrayValue?.map { $0["ID"] }, [.string("cache")])
        let unknownNode = try await registry.get("/v1/catalog/node-services/nope")
        XCTAssertEqual(String(decoding: unknownNode.body, as: UTF8.self), "null")
        let nodes = try await get("/v1/catalog/nodes", filter: #"Meta["env"] == "prod""#)
        XCTAssertEqual(nodes.1?.arrayValue?.map { $0["Node"] }, [.string("db1")])
        let health = try await get("/v1/health/service/postgres", filter: #"Node.Meta.env == "prod""#)
        XCTAssertEqual(health.1?.arrayValue?.count, 1)

        let bad = try await registry.get("/v1/catalog/services?filter=" + #"Service "x""#.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)
        XCTAssertEqual(bad.status, 400)
        XCTAssertFalse(bad.body.contains(0), "the error names the operator without a NUL byte")
        XCTAssertTrue(String(decoding: bad.body, as: UTF8.self).contains(#"unsupported operator "x""#))
    }

    func testCachedPeerAndConnectQueries() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let miss = try await registry.get("/v1/catalog/services?cached")
        XCTAssertEqual(miss.headers["x-cache"], "MISS")
        let hit = try await registry.get("/v1/catalog/services?cached")
        XCTAssertEqual(hit.headers["x-cache"], "HIT")
        XCTAssertNotNil(hit.headers["age"].flatMap { Int($0) })
        let plain = try await registry.get("/v1/catalog/services")
        XCTAssertNil(plain.headers["x-cache"])

        let peered = try await registry.json("/v1/catalog/services?peer=cluster-02")
        XCTAssertEqual(peered, .object(JSONObject()))
        let peeredHealth = try await registry.json("/v1/health/service/consul?peer=cluster-02")
        XCTAssertEqual(peeredHealth, .array([]))
        let merged = try await registry.json("/v1/health/service/consul?merge-central-config")
        XCTAssertEqual(merged.arrayValue?.count, 1)

        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"web","ID":"web-1","Port":8080}"#)
        _ = try await registry.put("/v1/agent/service/register", """
            {"Kind":"connect-proxy","Name":"web-sidecar-proxy","ID":"web-1-proxy","Port":21000,
             "Proxy":{"DestinationServiceName":"web","DestinationServiceID":"web-1","LocalServicePort":8080}}
            """)
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"api","ID":"api-1","Connect":{"Native":true},"SocketPath":"/run/api.sock"}"#)
        let proxies = try await registry.json("/v1/health/connect/web")
        XCTAssertEqual(proxies.arrayValue?.map { $0["Service"]?["ID"] }, [.string("web-1-proxy")])
        XCTAssertEqual(proxies[0]?["Service"]?["Kind"], .string("connect-proxy"))
        XCTAssertEqual(proxies[0]?["Service"]?["Proxy"]?["LocalServicePort"], .int(8080))
        let native = try await registry.json("/v1/health/connect/api")
        XCTAssertEqual(native[0]?["Service"]?["SocketPath"], .string("/run/api.sock"))
        let agent = try await registry.json("/v1/agent/service/web-1-proxy")
        XCTAssertEqual(agent["Proxy"]?["DestinationServiceName"], .string("web"))
        let (_, headers, body) = try await registry.get("/v1/agent/service/web-1")
        XCTAssertEqual(try JSON.parse(body)["ContentHash"]?.stringValue, headers["x-consul-contenthash"])
        try await registry.crashAndRestart()
        let kept = try await registry.json("/v1/agent/service/web-1-proxy")
        XCTAssertEqual(kept["Kind"], .string("connect-proxy"))
        XCTAssertEqual(kept["Proxy"], agent["Proxy"])
    }
}
