import Foundation
@testable import Sidecar
import TrellisCore
import XCTest

final class ServiceOutputTests: XCTestCase {
    private func entry(_ line: String, stream: String = "stdout") -> String {
        String(decoding: ServiceOutput.entry(Array(line.utf8), stream: stream, service: "orders", instance: "orders-9002"), as: UTF8.self)
    }

    private func occurrences(_ key: String, in text: String) -> Int {
        text.components(separatedBy: "\"\(key)\":").count - 1
    }

    func testAJSONLineKeepsItsFieldsAndGainsServiceInstanceAndStream() throws {
        let text = entry(#"{"level":"info","msg":"order placed","order":7}"#)
        XCTAssertEqual(text, #"{"level":"info","msg":"order placed","order":7,"service":"orders","instance":"orders-9002","stream":"stdout"}"# + "\n")
        XCTAssertEqual(entry("{}"), #"{"service":"orders","instance":"orders-9002","stream":"stdout"}"# + "\n")
    }

    func testAKeyTheServiceLoggedItselfAppearsOnceWithItsValue() throws {
        let text = entry(#"{"msg":"hi","service":"orders","stream":"audit"}"#)
        XCTAssertEqual(occurrences("service", in: text), 1, text)
        XCTAssertEqual(occurrences("stream", in: text), 1, text)
        let object = try XCTUnwrap(JSON.parse(Array(text.utf8.dropLast())).objectValue)
        XCTAssertEqual(object[exact: "stream"], .string("audit"))
        XCTAssertEqual(object[exact: "instance"], .string("orders-9002"))
        XCTAssertEqual(entry(#"{"service":"orders","instance":"i","stream":"s"}"#), #"{"service":"orders","instance":"i","stream":"s"}"# + "\n")
    }

    func testAnyOtherLineBecomesTheMessageAtALevelByStream() throws {
        let text = entry("plain \"text\"", stream: "stderr")
        let object = try XCTUnwrap(JSON.parse(Array(text.utf8.dropLast())).objectValue)
        XCTAssertEqual(object[exact: "msg"], .string("plain \"text\""))
        XCTAssertEqual(object[exact: "level"], .string("error"))
        XCTAssertEqual(object[exact: "service"], .string("orders"))
    }
}
