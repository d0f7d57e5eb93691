import Foundation
import TrellisCore
import XCTest

/// Config entries, gateways, Connect sidecar registrations and the operator endpoints.
final class ConfigEntryAndOperatorTests: XCTestCase {
    func testConfigEntriesAreStoredWithCASAndServedByKindAndName() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let entry = #"{"Kind":"ingress-gateway","Name":"edge","Listeners":[{"Port":8080,"Protocol":"http","Services":[{"Name":"web"}]}]}"#
        let stored = try await registry.put("/v1/config", entry)
        XCTAssertEqual(String(decoding: stored.body, as: UTF8.self), "true")
        let read = try await registry.json("/v1/config/ingress-gateway/edge")
        XCTAssertEqual(read["Kind"], .string("ingress-gateway"))
        XCTAssertEqual(read["Listeners"]?[0]?["Port"], .int(8080))
        let index = try XCTUnwrap(read["ModifyIndex"]?.intValue)
        let stale = try await registry.put("/v1/config?cas=\(index + 100)", entry)
        XCTAssertEqual(String(decoding: stale.body, as: UTF8.self), "false")
        let fresh = try await registry.put("/v1/config?cas=\(index)", entry.replacingOccurrences(of: "8080", with: "8443"))
        XCTAssertEqual(String(decoding: fresh.body, as: UTF8.self), "true")
        let list = try await registry.json("/v1/config/ingress-gateway")
        XCTAssertEqual(list.arrayValue?.map { $0["Listeners"]?[0]?["Port"] }, [.int(8443)])
        try await registry.crashAndRestart()
        let kept = try await registry.json("/v1/config/ingress-gateway/edge")
        XCTAssertEqual(kept["Listeners"]?[0]?["Port"], .int(8443))

        let missing = try await registry.get("/v1/config/ingress-gateway/nope")
        XCTAssertEqual(missing.status, 404)
        XCTAssertEqual(String(decoding: missing.body, as: UTF8.self), #"Config entry not found for "ingress-gateway" / "nope""#)
        XCTAssertNotNil(missing.headers["x-consul-index"])
        let unknown = try await registry.put("/v1/config", #"{"Kind":"frobnicator","Name":"x"}"#)
        XCTAssertEqual(unknown.status, 400)
        XCTAssertTrue(String(decoding: unknown.body, as: UTF8.self).contains("invalid config entry kind: frobnicator"))
        // Kinds that would steer traffic are refused, naming the kind, rather than stored and ignored.
        let router = try await registry.put("/v1/config", #"{"Kind":"service-router","Name":"web","Routes":[]}"#)
        XCTAssertEqual(router.status, 400)
        XCTAssertTrue(String(decoding: router.body, as: UTF8.self).contains(#""service-router" is not applied"#))
        let mesh = try await registry.put("/v1/config", #"{"Kind":"mesh","Name":"other"}"#)
        XCTAssertEqual(String(decoding: mesh.body, as: UTF8.self), #"invalid name ("other"), only "mesh" is supported"#)

        let staleDelete = try await registry.client.send("DELETE", "/v1/config/ingress-gateway/edge?cas=1")
        XCTAssertEqual(String(decoding: staleDelete.body, as: UTF8.self), "false")
        let deleted = try await registry.client.send("DELETE", "/v1/config/ingress-gateway/edge")
        XCTAssertEqual(String(decoding: deleted.body, as: UTF8.self), "{}")
        let gone = try await registry.get("/v1/config/ingress-gateway/edge")
        XCTAssertEqual(gone.status, 404)
    }

    func testGatewayServicesAndIngressHealthFollowTheGatewaysEntries() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let none = try await registry.json("/v1/catalog/gateway-services/edge")
        XCTAssertEqual(none, .array([]))
        _ = try await registry.put("/v1/catalog/register", #"{"Node":"gw","Address":"10.0.0.9","Service":{"Service":"edge","Kind":"ingress-gateway","Port":8080}}"#)
        _ = try await registry.put("/v1/catalog/register", #"{"Node":"gw","Address":"10.0.0.9","Service":{"Service":"web","Port":80}}"#)
        _ = try await registry.put("/v1/config", #"{"Kind":"ingress-gateway","Name":"edge","Listeners":[{"Port":8080,"Protocol":"tcp","Services":[{"Name":"web"}]}]}"#)
        let services = try await registry.json("/v1/catalog/gateway-services/edge")
        XCTAssertEqual(services[0]?["Service"]?["Name"], .string("web"))
        XCTAssertEqual(services[0]?["GatewayKind"], .string("ingress-gateway"))
        XCTAssertEqual(services[0]?["Port"], .int(8080))
        let ingress = try await registry.json("/v1/health/ingress/web")
        XCTAssertEqual(ingress.arrayValue?.map { $0["Service"]?["Service"] }, [.string("edge")])
        let noIngress = try await registry.json("/v1/health/ingress/other")
        XCTAssertEqual(noIngress, .array([]))
    }

    func testSidecarServiceShorthandRegistersAProxyAndDeregistersItWithItsService() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let (status, _, body) = try await registry.put("/v1/agent/service/register", """
            {"Name":"web","ID":"web-1","Port":8080,"Tags":["v1"],"Connect":{"SidecarService":{}}}
            """)
        XCTAssertEqual(status, 200, String(decoding: body, as: UTF8.self))
        let services = try await registry.json("/v1/agent/services")
        let proxy = try XCTUnwrap(services["web-1-sidecar-proxy"])
        XCTAssertEqual(proxy["Kind"], .string("connect-proxy"))
        XCTAssertEqual(proxy["Service"], .string("web-sidecar-proxy"))
        XCTAssertEqual(proxy["Port"], .int(21000))
        XCTAssertEqual(proxy["Tags"], .strings(["v1"]))
        XCTAssertEqual(proxy["Proxy"]?["DestinationServiceID"], .string("web-1"))
        XCTAssertEqual(proxy["Proxy"]?["LocalServicePort"], .int(8080))
        XCTAssertNil(services["web-1"]?["Connect"]?["SidecarService"])
        let checks = try await registry.json("/v1/agent/checks")
        XCTAssertEqual(checks["service:web-1-sidecar-proxy:1"]?["Name"], .string("Connect Sidecar Listening"))
        let connect = try await registry.json("/v1/catalog/connect/web")
        XCTAssertEqual(connect[0]?["ServicePort"], .int(21000))

        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"api","ID":"api-1","Port":9090,"Connect":{"SidecarService":{}}}"#)
        let second = try await registry.json("/v1/agent/service/api-1-sidecar-proxy")
        XCTAssertEqual(second["Port"], .int(21001), "the next free port of 21000-21255")

        _ = try await registry.put("/v1/agent/service/deregister/web-1")
        let after = try await registry.json("/v1/agent/services")
        XCTAssertNil(after["web-1-sidecar-proxy"])
        XCTAssertNotNil(after["api-1-sidecar-proxy"])
    }

    func testOperatorEndpointsAnswerAsASingleServerWithoutRaft() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let raft = try await registry.json("/v1/operator/raft/configuration")
        XCTAssertEqual(raft["Servers"]?.arrayValue?.count, 1)
        XCTAssertEqual(raft["Servers"]?[0]?["Node"], .string(registry.node))
        XCTAssertEqual(raft["Servers"]?[0]?["Leader"], .bool(true))
        XCTAssertEqual(raft["Servers"]?[0]?["Address"]?.stringValue?.hasSuffix(":8300"), true)
        let removal = try await registry.client.send("DELETE", "/v1/operator/raft/peer?address=10.255.255.1:8300")
        XCTAssertEqual(removal.status, 500)
        XCTAssertEqual(String(decoding: removal.body, as: UTF8.self), #"address "10.255.255.1:8300" was not found in the Raft configuration"#)
        let transfer = try await registry.client.send("POST", "/v1/operator/raft/transfer-leader")
        XCTAssertEqual(transfer.status, 500)
        let keyring = try await registry.get("/v1/operator/keyring")
        XCTAssertEqual(keyring.status, 500)

        let autopilot = try await registry.json("/v1/operator/autopilot/configuration")
        XCTAssertEqual(autopilot["CleanupDeadServers"], .bool(true))
        let index = try XCTUnwrap(autopilot["ModifyIndex"]?.intValue)
        let stale = try await registry.put("/v1/operator/autopilot/configuration?cas=\(index + 1000)", #"{"CleanupDeadServers":false}"#)
        XCTAssertEqual(String(decoding: stale.body, as: UTF8.self), "false")
        let updated = try await registry.put("/v1/operator/autopilot/configuration", #"{"CleanupDeadServers":false}"#)
        XCTAssertEqual(String(decoding: updated.body, as: UTF8.self), "true")
        try await registry.crashAndRestart()
        let kept = try await registry.json("/v1/operator/autopilot/configuration")
        XCTAssertEqual(kept["CleanupDeadServers"], .bool(false))
        XCTAssertEqual(kept["MaxTrailingLogs"], .int(250))

        let health = try await registry.json("/v1/operator/autopilot/health")
        XCTAssertEqual(health["Healthy"], .bool(true))
        let state = try await registry.json("/v1/operator/autopilot/state")
        XCTAssertEqual(state["Voters"]?.arrayValue?.count, 1)
        let usage = try await registry.json("/v1/operator/usage")
        XCTAssertEqual(usage["KnownLeader"], .bool(true))
        XCTAssertEqual(usage["Usage"]?["dc1"]?["Nodes"], .int(1))
        let wan = try await registry.json("/v1/agent/members?wan=1")
        XCTAssertEqual(wan[0]?["Name"], .string("\(registry.node).dc1"))
    }

    func testDiscoveryChainsAreConsulsDefaultChain() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let chain = try await registry.json("/v1/discovery-chain/web")
        XCTAssertEqual(chain["Chain"]?["ServiceName"], .string("web"))
        XCTAssertEqual(chain["Chain"]?["Protocol"], .string("tcp"))
        XCTAssertEqual(chain["Chain"]?["StartNode"], .string("resolver:web.default.default.dc1"))
        XCTAssertEqual(chain["Chain"]?["Targets"]?["web.default.default.dc1"]?["ConnectTimeout"], .string("5s"))
        let (status, _, body) = try await registry.client.send("POST", "/v1/discovery-chain/web",
                                                                body: Array(#"{"OverrideProtocol":"http","OverrideConnectTimeout":"2s"}"#.utf8))
        XCTAssertEqual(status, 200)
        let overridden = try JSON.parse(body)
        XCTAssertEqual(overridden["Chain"]?["Protocol"], .string("http"))
        XCTAssertEqual(overridden["Chain"]?["Default"], .bool(false))
        XCTAssertEqual(overridden["Chain"]?["Nodes"]?["resolver:web.default.default.dc1"]?["Resolver"]?["ConnectTimeout"], .string("2s"))
        let otherDC = try await registry.get("/v1/discovery-chain/web?compile-dc=dc9")
        XCTAssertEqual(otherDC.status, 500)
    }
}
