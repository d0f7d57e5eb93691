@testable import Registry
import TrellisCore
import XCTest

/// The DNS wire codec against hand-built messages, including hostile ones.
final class DNSMessageTests: XCTestCase {
    /// A query for `name` of `type`, optionally with an EDNS0 OPT record advertising `edns` bytes.
    private func query(_ name: String, type: UInt16 = 1, id: UInt16 = 0x1234, edns: UInt16? = nil) -> [UInt8] {
        var bytes: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xFF), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, edns == nil ? 0 : 1]
        for label in name.split(separator: ".") {
            bytes.append(UInt8(label.utf8.count))
            bytes += Array(label.utf8)
        }
        bytes += [0, UInt8(type >> 8), UInt8(type & 0xFF), 0, 1]
        if let edns { bytes += [0, 0, 41, UInt8(edns >> 8), UInt8(edns & 0xFF), 0, 0, 0, 0, 0, 0] }
        return bytes
    }

    func testAQueryIsReadWithItsEDNSBufferSize() throws {
        let parsed = try DNSQuery(query("web.service.consul", type: 33, edns: 1232))
        XCTAssertEqual(parsed.id, 0x1234)
        XCTAssertEqual(parsed.name, ["web", "service", "consul"])
        XCTAssertEqual(parsed.type, 33)
        XCTAssertTrue(parsed.recursionDesired)
        XCTAssertEqual(parsed.ednsBufferSize, 1232)
        XCTAssertNil(try DNSQuery(query("web.service.consul")).ednsBufferSize)
        XCTAssertEqual(try DNSQuery(query("x.consul", edns: 100)).ednsBufferSize, 512, "sizes under 512 count as 512")
    }

    func testMalformedAndHostileMessagesAreRefused() {
        var response = query("web.service.consul")
        response[2] |= 0x80
        let pointerLoop: [UInt8] = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1]
        var twoQuestions = query("a.consul")
        twoQuestions[5] = 2
        let labelPastEnd: [UInt8] = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 40, 0x61]
        var tooLong = query("a.consul")
        tooLong += Array(repeating: 0, count: DNSQuery.maxSize)
        let longName = (0..<5).map { _ in String(repeating: "a", count: 60) }.joined(separator: ".")
        for (what, bytes) in [("empty", [UInt8]()), ("a response", response), ("a compression loop", pointerLoop),
                              ("two questions", twoQuestions), ("a label past the end", labelPastEnd),
                              ("over the size limit", tooLong), ("a name over 255 bytes", query(longName)),
                              ("a truncated header", Array(query("a.consul").prefix(11)))] {
            XCTAssertThrowsError(try DNSQuery(bytes), what)
        }
    }

    func testAnswersAreEncodedWithCompressedNames() throws {
        let parsed = try DNSQuery(query("web.service.consul"))
        let answer = DNSAnswer(answers: [
            DNSRecord(name: "web.service.consul.", ttl: 30, data: .a([10, 0, 0, 1])),
            DNSRecord(name: "web.service.consul.", ttl: 30, data: .a([10, 0, 0, 2])),
        ])
        let bytes = answer.encode(for: parsed, questionName: "web.service.consul.")
        XCTAssertEqual(Array(bytes[0..<2]), [0x12, 0x34])
        XCTAssertEqual(bytes[2] & 0x84, 0x84, "a response, authoritative")
        XCTAssertEqual(Array(bytes[6..<8]), [0, 2], "two answers")
        // Question (12 + 20 + 4 bytes), then each answer names the question by a pointer to offset 12.
        XCTAssertEqual(Array(bytes[36..<38]), [0xC0, 12])
        XCTAssertEqual(Array(bytes[(bytes.count - 4)...]), [10, 0, 0, 2])
        XCTAssertEqual(bytes.count, 36 + 2 * 16)
    }

    func testTheResolverAnswersFromTheCatalog() throws {
        var state = RegistryState()
        _ = try state.write { (s: inout RegistryState) throws(CatalogError) in
            s.putNode(Node(id: "", name: "m1", address: "10.0.0.1", datacenter: "dc1"))
            var web = ServiceInstance(node: "m1", id: "web1", name: "web")
            web.tags = ["blue"]
            web.port = 8080
            s.putInstance(web)
        }
        var settings = DNSSettings()
        settings.serviceTTL = ["*": .seconds(5), "web": .seconds(30)]
        let resolver = DNSResolver(datacenter: "dc1", settings: settings)
        let a = resolver.answer(["web", "service", "consul"], type: 1, state: state)
        XCTAssertEqual(a.answers, [DNSRecord(name: "web.service.consul.", ttl: 30, data: .a([10, 0, 0, 1]))])
        let tagged = resolver.answer(["BLUE", "Web", "service", "dc1", "consul"], type: 1, state: state)
        XCTAssertEqual(tagged.answers.count, 1, "names are case-insensitive and the datacenter is optional")
        XCTAssertEqual(resolver.answer(["green", "web", "service", "consul"], type: 1, state: state).rcode, .nameError)
        XCTAssertEqual(resolver.answer(["web", "service", "dc2", "consul"], type: 1, state: state).rcode, .nameError)
        let srv = resolver.answer(["_web", "_tcp", "service", "consul"], type: 33, state: state)
        XCTAssertEqual(srv.answers.first?.data, .srv(priority: 1, weight: 1, port: 8080, target: "m1.node.dc1.consul."))
        XCTAssertEqual(srv.additional.first?.data, .a([10, 0, 0, 1]))
        let node = resolver.answer(["m1", "node", "consul"], type: 1, state: state)
        XCTAssertEqual(node.answers.first?.data, .a([10, 0, 0, 1]))
        let prepared = resolver.answer(["geo", "query", "consul"], type: 1, state: state)
        XCTAssertEqual(prepared.rcode, .nameError)
        XCTAssertEqual(prepared.authority.first?.type, .soa)
        XCTAssertEqual(resolver.answer(["example", "com"], type: 1, state: state).rcode, .refused)
        let addr = resolver.answer(["0a000001", "addr", "dc1", "consul"], type: 1, state: state)
        XCTAssertEqual(addr.answers.first?.data, .a([10, 0, 0, 1]))
    }
}
