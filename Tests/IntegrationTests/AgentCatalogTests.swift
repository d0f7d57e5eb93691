import TrellisCore
import XCTest

final class AgentCatalogTests: XCTestCase {
    func testRegistryListsItselfLikeConsul() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let services = try await registry.json("/v1/catalog/services")
        XCTAssertEqual(services["consul"], .array([]))
        let consul = try await registry.json("/v1/catalog/service/consul")
        XCTAssertEqual(consul[0]?["ServicePort"], .int(8300))
        let nodeChecks = try await registry.json("/v1/health/node/\(registry.node)")
        XCTAssertEqual(nodeChecks[0]?["CheckID"], .string("serfHealth"))
        XCTAssertEqual(nodeChecks[0]?["ServiceID"], .string(""))
        XCTAssertEqual(nodeChecks[0]?["Status"], .string("passing"))
        let me = try await registry.json("/v1/agent/self")
        XCTAssertEqual(me["Config"]?["Datacenter"], .string("dc1"))
        XCTAssertEqual(me["Config"]?["NodeName"], .string(registry.node))
        for section in ["Member", "Stats", "Meta", "Coord", "DebugConfig", "xDS"] {
            XCTAssertNotNil(me[section], section)
        }
        let v1 = try await registry.json("/v1/status/leader")
        XCTAssertEqual(v1, me["Stats"]?["consul"]?["leader_addr"])
        let v2 = try await registry.json("/v1/catalog/datacenters")
        XCTAssertEqual(v2, .strings(["dc1"]))
        let agentServices = try await registry.json("/v1/agent/services")
        XCTAssertNil(agentServices["consul"], "the registry's own service is not an agent service")
        // Like a Consul agent without its UI: the root answers 200 (HTTP checks probe it), other paths 404.
        let root = try await registry.get("/")
        XCTAssertEqual(root.status, 200)
        let unknown = try await registry.get("/nope")
        XCTAssertEqual(unknown.status, 404)
    }

    func testRegisterReadDeregisterWithConsulShapes() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let (status, _, _) = try await registry.put("/v1/agent/service/register", """
            {"name": "web", "id": "web-1", "port": 8080, "tags": ["v1", "blue"], "meta": {"team": "shop"},
             "enable_tag_override": true, "Weights": {"Passing": 3, "Warning": 1},
             "checks": [{"ttl": "30s", "status": "passing"}, {"TTL": "1m", "Name": "second"}], "UnknownField": 1}
            """)
        XCTAssertEqual(status, 200)
        let agent = try await registry.json("/v1/agent/service/web-1")
        XCTAssertEqual(agent["Service"], .string("web"))
        XCTAssertEqual(agent["Port"], .int(8080))
        XCTAssertEqual(agent["EnableTagOverride"], .bool(true))
        XCTAssertEqual(agent["Weights"]?["Passing"], .int(3))
        XCTAssertEqual(agent["Meta"], .stringMap(["team": "shop"]))

        let checks = try await registry.json("/v1/agent/checks")
        XCTAssertEqual(Set(checks.objectValue!.pairs.map(\.key)), ["service:web-1:1", "service:web-1:2"])
        XCTAssertEqual(checks["service:web-1:1"]?["Status"], .string("passing"))
        XCTAssertEqual(checks["service:web-1:2"]?["Status"], .string("critical"), "checks start critical")
        XCTAssertEqual(checks["service:web-1:1"]?["Name"], .string("Service 'web' check"))
        XCTAssertEqual(checks["service:web-1:1"]?["Type"], .string("ttl"))

        let catalog = try await registry.json("/v1/catalog/service/web")
        let health = try await registry.json("/v1/health/service/web")
        XCTAssertEqual(catalog[0]?["ServiceID"], .string("web-1"))
        XCTAssertEqual(health[0]?["Service"]?["ID"], .string("web-1"))
        XCTAssertEqual(health[0]?["Checks"]?.arrayValue?.count, 3, "serfHealth plus two service checks")
        let v3 = try await registry.json("/v1/health/service/web?passing").arrayValue?.count
        XCTAssertEqual(v3, 0)

        let (deregistered, _, _) = try await registry.put("/v1/agent/service/deregister/web-1")
        XCTAssertEqual(deregistered, 200)
        let v4 = try await registry.json("/v1/catalog/service/web")
        XCTAssertEqual(v4, .array([]))
        let v5 = try await registry.json("/v1/agent/checks")
        XCTAssertEqual(v5, .object(JSONObject()))
        let (missing, _, body) = try await registry.put("/v1/agent/service/deregister/web-1")
        XCTAssertEqual(missing, 404, String(decoding: body, as: UTF8.self))
    }

    func testSingleCheckGetsServiceCheckID() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"api","Check":{"TTL":"10s"}}"#)
        let checks = try await registry.json("/v1/agent/checks")
        XCTAssertNotNil(checks["service:api"])
    }

    func testCatalogAndHealthListSameInstancesInSameOrderWithTagAndMetaFilters() async throws {
        let registry = try await RegistryUnderTest.start(self)
        for (node, id, tags) in [("b-node", "x2", #"["v1","green"]"#), ("a-node", "x9", #"["v1"]"#), ("b-node", "x1", #"["v2"]"#)] {
            let (status, _, body) = try await registry.put("/v1/catalog/register", """
                {"Node": "\(node)", "Address": "10.0.0.\(node.count)", "NodeMeta": {"rack": "\(node.prefix(1))"},
                 "Service": {"ID": "\(id)", "Service": "x", "Tags": \(tags), "Port": 9000}}
                """)
            XCTAssertEqual(status, 200, String(decoding: body, as: UTF8.self))
            XCTAssertEqual(String(decoding: body, as: UTF8.self), "true")
        }
        let catalogIDs = try await registry.json("/v1/catalog/service/x").arrayValue!.map { $0["ServiceID"]!.stringValue! }
        let healthIDs = try await registry.json("/v1/health/service/x").arrayValue!.map { $0["Service"]!["ID"]!.stringValue! }
        XCTAssertEqual(catalogIDs, ["x9", "x1", "x2"])
        XCTAssertEqual(healthIDs, catalogIDs)
        let tagged = try await registry.json("/v1/catalog/service/x?tag=v1&tag=green").arrayValue!
        XCTAssertEqual(tagged.map { $0["ServiceID"]!.stringValue! }, ["x2"])
        let racked = try await registry.json("/v1/health/service/x?node-meta=rack:a").arrayValue!
        XCTAssertEqual(racked.map { $0["Service"]!["ID"]!.stringValue! }, ["x9"])
        let filtered = try await registry.json("/v1/catalog/service/x?filter=" + "ServiceTags contains \"v2\"".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)
        XCTAssertEqual(filtered.arrayValue!.map { $0["ServiceID"]!.stringValue! }, ["x1"])
        let nodes = try await registry.json("/v1/catalog/nodes").arrayValue!.map { $0["Node"]!.stringValue! }
        XCTAssertEqual(nodes, ["a-node", "b-node", registry.node].sorted())
        let bNode = try await registry.json("/v1/catalog/node/b-node")
        XCTAssertEqual(Set(bNode["Services"]!.objectValue!.pairs.map(\.key)), ["x1", "x2"])

        let (_, _, removed) = try await registry.put("/v1/catalog/deregister", #"{"Node": "b-node"}"#)
        XCTAssertEqual(String(decoding: removed, as: UTF8.self), "true")
        let v6 = try await registry.json("/v1/catalog/service/x").arrayValue!.count
        XCTAssertEqual(v6, 1)
        let v7 = try await registry.json("/v1/catalog/node/b-node")
        XCTAssertEqual(v7, .null)
    }

    func testTTLCheckUpdatesAndMaintenanceMode() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"db","ID":"db1","Check":{"TTL":"30s"}}"#)
        let v8 = try await registry.put("/v1/agent/check/pass/service:db1?note=all+good").status
        XCTAssertEqual(v8, 200)
        var check = try await registry.json("/v1/agent/checks")["service:db1"]
        XCTAssertEqual(check?["Status"], .string("passing"))
        XCTAssertEqual(check?["Output"], .string("all good"))
        let v9 = try await registry.put("/v1/agent/check/update/service:db1", #"{"Status":"warning","Output":"slow"}"#).status
        XCTAssertEqual(v9, 200)
        check = try await registry.json("/v1/agent/checks")["service:db1"]
        XCTAssertEqual(check?["Status"], .string("warning"))
        let v10 = try await registry.put("/v1/agent/check/update/service:db1", #"{"Status":"bogus"}"#).status
        XCTAssertEqual(v10, 400)
        let v11 = try await registry.put("/v1/agent/check/pass/nope").status
        XCTAssertEqual(v11, 404)

        let v12 = try await registry.put("/v1/agent/service/maintenance/db1?enable=true&reason=upgrade").status
        XCTAssertEqual(v12, 200)
        let checks = try await registry.json("/v1/health/checks/db")
        let maintenance = checks.arrayValue!.first { $0["CheckID"] == .string("_service_maintenance:db1") }
        XCTAssertEqual(maintenance?["Status"], .string("critical"))
        XCTAssertEqual(maintenance?["Notes"], .string("upgrade"))
        let v13 = try await registry.json("/v1/health/state/critical").arrayValue!.count
        XCTAssertEqual(v13, 1)
        let v14 = try await registry.put("/v1/agent/service/maintenance/db1?enable=false").status
        XCTAssertEqual(v14, 200)
        let v15 = try await registry.json("/v1/health/state/critical").arrayValue!.count
        XCTAssertEqual(v15, 0)
        let v16 = try await registry.put("/v1/agent/service/maintenance/db1").status
        XCTAssertEqual(v16, 400)
        let v17 = try await registry.put("/v1/agent/service/maintenance/ghost?enable=true").status
        XCTAssertEqual(v17, 404)
    }

    func testCheckRegistrationRules() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let v18 = try await registry.put("/v1/agent/check/register", #"{"Name":"orphan","ServiceID":"ghost","TTL":"10s"}"#).status
        XCTAssertEqual(v18, 404)
        let v19 = try await registry.put("/v1/agent/check/register", #"{"Name":"disk","TTL":"10s","Status":"passing"}"#).status
        XCTAssertEqual(v19, 200)
        let v20 = try await registry.json("/v1/agent/checks")["disk"]?["ServiceID"]
        XCTAssertEqual(v20, .string(""))
        let v21 = try await registry.put("/v1/agent/check/deregister/disk").status
        XCTAssertEqual(v21, 200)
        let v22 = try await registry.put("/v1/agent/check/deregister/disk").status
        XCTAssertEqual(v22, 404)
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"s","Checks":[{"TTL":"10s"},{"TTL":"20s"}]}"#)
        _ = try await registry.put("/v1/agent/service/register?replace-existing-checks", #"{"Name":"s","Check":{"TTL":"10s"}}"#)
        let checks = try await registry.json("/v1/agent/checks")
        XCTAssertEqual(checks.objectValue!.pairs.map(\.key), ["service:s"])
    }
}
