import Foundation
@testable import Registry
import TrellisCore
import XCTest

/// The CA and intention tables on the pure state: rotation and retirement of roots, intention
/// precedence, and both tables' records read back as written.
final class ConnectStateTests: XCTestCase {
    private func root(_ id: String) -> CARoot {
        var root = CARoot()
        root.id = id
        root.certificatePEM = "pem-\(id)"
        return root
    }

    private func write(_ state: inout RegistryState, _ body: (inout RegistryState) throws(CatalogError) -> Void) throws -> WriteEffect? {
        try state.write(body).1
    }

    func testARotatedRootStaysTrustedForOneLeafLifetimeAndIsThenDropped() throws {
        var state = RegistryState()
        var configuration = CAConfiguration()
        configuration.clusterID = "c1"
        configuration.config = .object(JSONObject([("LeafCertTTL", .string("1h"))]))
        _ = try write(&state) { $0.initializeCA(configuration, root: root("r1")) }
        _ = try write(&state) { $0.initializeCA(configuration, root: root("other")) }
        XCTAssertEqual(state.trustedRoots(now: 0).map(\.id), ["r1"], "a second initialization keeps the first root")

        let rotatedAt = 1_000_000
        let effect = try write(&state) { s throws(CatalogError) in
            try s.updateCA(provider: "consul", config: configuration.config, newRoot: root("r2"), now: rotatedAt)
        }
        XCTAssertEqual(state.activeRoot?.id, "r2")
        XCTAssertEqual(state.trustedRoots(now: rotatedAt).map(\.id), ["r1", "r2"])
        XCTAssertEqual(state.trustedRoots(now: rotatedAt + 3601).map(\.id), ["r2"], "retired once every leaf it signed expired")
        XCTAssertTrue(effect?.wake.contains(WatchKey.connectCA) == true)

        _ = try write(&state) { s throws(CatalogError) in
            try s.updateCA(provider: "consul", config: configuration.config, newRoot: nil, now: rotatedAt + 7200)
        }
        XCTAssertEqual(state.caRoots.keys.sorted(), ["r2"], "a later CA write drops retired roots from the store")

        let records = try XCTUnwrap(effect?.ops).compactMap { op -> StoredRecord? in
            guard case .put(let table, let key, let value) = op else { return nil }
            return StoredRecord(table: table, key: key, value: value)
        }
        var reloaded = RegistryState()
        for record in records { _ = try reloaded.apply(.put(table: record.table, key: record.key, value: record.value), now: .now) }
        XCTAssertEqual(reloaded.caRoots["r1"]?.active, false)
        XCTAssertEqual(reloaded.caRoots["r1"]?.retiresAt, rotatedAt + 3601)
        XCTAssertEqual(reloaded.caRoots["r2"]?.active, true)
        XCTAssertEqual(reloaded.caConfiguration?.leafTTL, .seconds(3600))
    }

    func testTheMostSpecificIntentionDecidesAndTiesBreakByName() throws {
        var state = RegistryState()
        _ = try write(&state) { s in
            s.upsertIntention(Intention(source: "*", destination: "*", action: .deny), now: "")
            s.upsertIntention(Intention(source: "web", destination: "*", action: .allow), now: "")
            s.upsertIntention(Intention(source: "*", destination: "db", action: .deny), now: "")
            s.upsertIntention(Intention(source: "web", destination: "db", action: .allow), now: "")
            s.upsertIntention(Intention(source: "api", destination: "db", action: .allow), now: "")
        }
        let cases: [(String, String, String?)] = [
            ("web", "db", "web>db"), ("api", "db", "api>db"), ("batch", "db", "*>db"), ("web", "cache", "web>*"), ("batch", "cache", "*>*"),
        ]
        for (source, destination, expected) in cases {
            let deciding = state.decidingIntention(source: source, destination: destination)
            XCTAssertEqual(deciding.map { "\($0.sourceName)>\($0.destinationName)" }, expected, "\(source) => \(destination)")
        }
        XCTAssertEqual(state.allIntentions.map(\.precedence), [9, 9, 8, 6, 5])
        XCTAssertEqual(state.allIntentions.prefix(2).map(\.sourceName), ["api", "web"])

        var replaced = Intention(source: "web", destination: "db", action: .deny)
        replaced.description = "now denied"
        let before = try XCTUnwrap(state.intention(source: "web", destination: "db"))
        _ = try write(&state) { $0.upsertIntention(replaced, now: "") }
        let after = try XCTUnwrap(state.intention(source: "web", destination: "db"))
        XCTAssertEqual(after.action, .deny)
        XCTAssertEqual(after.createIndex, before.createIndex)
        XCTAssertGreaterThan(after.modifyIndex, before.modifyIndex)
        XCTAssertEqual(try IntentionRecord.decode(IntentionRecord.encode(after)), after)
    }
}
