import Foundation
import TrellisCore
import XCTest

/// Consul's user events and network coordinates.
final class EventAndCoordinateTests: XCTestCase {
    func testEventsAreFiredListedByNameAndBlockedOn() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let fired = try await registry.put("/v1/event/fire/deploy", "v1.2")
        XCTAssertEqual(fired.status, 200)
        let event = try JSON.parse(fired.body)
        XCTAssertEqual(event["Name"], .string("deploy"))
        XCTAssertEqual(event["Payload"], .string(Base64.encode(Array("v1.2".utf8))))
        XCTAssertEqual(event["Version"], .int(1))
        let id = try XCTUnwrap(event["ID"]?.stringValue)
        _ = try await registry.put("/v1/event/fire/restart")

        let (_, headers, body) = try await registry.get("/v1/event/list?name=deploy")
        let listed = try JSON.parse(body).arrayValue ?? []
        XCTAssertEqual(listed.map { $0["ID"] }, [.string(id)])
        XCTAssertEqual(listed.first?["LTime"], .int(1))
        let index = try XCTUnwrap(headers["x-consul-index"])
        XCTAssertNotEqual(index, "1")

        // A list blocked on the current index answers when the next matching event arrives.
        let blocked = Task { try await registry.get("/v1/event/list?name=deploy&index=\(index)&wait=10s") }
        try await Task.sleep(for: .milliseconds(300))
        _ = try await registry.put("/v1/event/fire/restart")
        _ = try await registry.put("/v1/event/fire/deploy", "v1.3")
        let woken = try await blocked.value
        XCTAssertEqual(try JSON.parse(woken.body).arrayValue?.count, 2)
        XCTAssertNotEqual(woken.headers["x-consul-index"], index)

        // Filters: events for other nodes are not received here; a tag filter needs a service filter.
        _ = try await registry.put("/v1/event/fire/elsewhere?node=%5Eother-node%24")
        let elsewhere = try await registry.json("/v1/event/list?name=elsewhere")
        XCTAssertEqual(elsewhere.arrayValue?.count, 0)
        let tagOnly = try await registry.put("/v1/event/fire/x?tag=blue")
        XCTAssertEqual(tagOnly.status, 500)
        let big = try await registry.put("/v1/event/fire/x", String(repeating: "p", count: 513))
        XCTAssertEqual(big.status, 413)
        let none = try await registry.get("/v1/event/list?name=nothing")
        XCTAssertEqual(none.headers["x-consul-index"], "1")
    }

    func testCoordinatesAreKeptPerNodeAndRemovedWithIt() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let own = try await registry.json("/v1/coordinate/nodes")
        XCTAssertEqual(own.arrayValue?.map { $0["Node"] }, [.string(registry.node)])
        let datacenters = try await registry.json("/v1/coordinate/datacenters")
        XCTAssertEqual(datacenters[0]?["Datacenter"], .string("dc1"))
        XCTAssertEqual(datacenters[0]?["Coordinates"]?[0]?["Node"], .string(registry.node), "Consul strips the .dc suffix")

        _ = try await registry.put("/v1/catalog/register", #"{"Node":"edge","Address":"10.1.1.1"}"#)
        let update = #"{"Node":"edge","Segment":"","Coord":{"Vec":[0.1,0,0,0,0,0,0,0.5],"Error":0.2,"Adjustment":0.01,"Height":0.0001}}"#
        let stored = try await registry.put("/v1/coordinate/update", update)
        XCTAssertEqual(stored.status, 200)
        let dropped = try await registry.put("/v1/coordinate/update", update.replacingOccurrences(of: "edge", with: "ghost"))
        XCTAssertEqual(dropped.status, 200, "an update for an unknown node is dropped, as in Consul")
        let invalid = try await registry.put("/v1/coordinate/update", #"{"Node":"edge","Coord":{"Vec":[1,2,3]}}"#)
        XCTAssertEqual(invalid.status, 400)

        try await registry.crashAndRestart()
        let edge = try await registry.json("/v1/coordinate/node/edge")
        XCTAssertEqual(edge[0]?["Coord"]?["Vec"]?[0], .double(0.1))
        XCTAssertEqual(edge[0]?["Coord"]?["Error"], .double(0.2))
        let ghost = try await registry.get("/v1/coordinate/node/ghost")
        XCTAssertEqual(ghost.status, 404)

        _ = try await registry.put("/v1/catalog/deregister", #"{"Node":"edge"}"#)
        let gone = try await registry.get("/v1/coordinate/node/edge")
        XCTAssertEqual(gone.status, 404)
    }
}
