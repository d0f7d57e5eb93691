import TrellisCore
import XCTest

final class JSONTests: XCTestCase {
    func testParsesAndKeepsIntegersDistinctFromDoubles() throws {
        let value = try JSON.parse(#"{"Port": 8080, "Weight": 1.5, "Big": 9007199254740993, "On": true, "Off": null}"#)
        let object = try XCTUnwrap(value.objectValue)
        XCTAssertEqual(object.field("Port"), .int(8080))
        XCTAssertEqual(object.field("Weight"), .double(1.5))
        XCTAssertEqual(object.field("Big"), .int(9_007_199_254_740_993))
        XCTAssertEqual(object.field("On"), .bool(true))
        XCTAssertEqual(object.field("Off"), .null)
    }

    func testFieldLookupIgnoresCaseAndSnakeCase() throws {
        let object = try XCTUnwrap(JSON.parse(#"{"enable_tag_override": true, "SERVICEID": "a"}"#).objectValue)
        XCTAssertEqual(object.field("EnableTagOverride"), .bool(true))
        XCTAssertEqual(object.field("ServiceID"), .string("a"))
        XCTAssertEqual(object.field("service_id"), .string("a"))
        XCTAssertNil(object[exact: "EnableTagOverride"])
    }

    func testStringEscapesRoundTrip() throws {
        let tricky = "quote\" backslash\\ newline\n tab\t nul\u{0} emoji 🚀 é"
        let encoded = JSON.string(tricky).serialized()
        XCTAssertEqual(try JSON.parse(encoded), .string(tricky))
        XCTAssertEqual(try JSON.parse(#""\ud83d\ude80 \u00e9""#), .string("🚀 é"))
    }

    func testRejectsMalformedDocumentsWithOffset() {
        for bad in ["", "{", #"{"a":}"#, "[1,]", #"{"a" 1}"#, "tru", "01x", #""unterminated"#, "{} extra"] {
            XCTAssertThrowsError(try JSON.parse(bad), "accepted \(bad)")
        }
    }

    func testRejectsPathologicalNesting() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        XCTAssertThrowsError(try JSON.parse(deep))
    }

    func testEmptyCollectionsAndPrettyForm() {
        let value = JSON.object(JSONObject([("Tags", .array([])), ("Meta", .object(JSONObject())), ("N", .null)]))
        XCTAssertEqual(value.text, #"{"Tags":[],"Meta":{},"N":null}"#)
        let pretty = String(decoding: JSON.array([.int(1)]).serialized(pretty: true), as: UTF8.self)
        XCTAssertEqual(pretty, "[\n    1\n]\n")
    }

    func testRandomDocumentsSurviveRoundTrip() throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let value = randomJSON(depth: 3, using: &generator)
            XCTAssertEqual(try JSON.parse(value.serialized()), value)
            XCTAssertEqual(try JSON.parse(value.serialized(pretty: true)), value)
        }
    }

    private func randomJSON(depth: Int, using g: inout SystemRandomNumberGenerator) -> JSON {
        switch Int.random(in: 0..<(depth > 0 ? 7 : 5), using: &g) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &g))
        case 2: return .int(Int64.random(in: .min ... .max, using: &g))
        case 3: return .double(Double(Int.random(in: -1000...1000, using: &g)) + 0.25)
        case 4: return .string(String((0..<Int.random(in: 0...8, using: &g)).map { _ in
            Character(Unicode.Scalar(UInt8.random(in: 1...126, using: &g))) }))
        case 5: return .array((0..<Int.random(in: 0...4, using: &g)).map { _ in randomJSON(depth: depth - 1, using: &g) })
        default:
            return .object(JSONObject((0..<Int.random(in: 0...4, using: &g)).map { i in
                ("k\(i)", randomJSON(depth: depth - 1, using: &g)) }))
        }
    }
}
