import Foundation
import TrellisCore
import XCTest

final class ConfigReaderTests: XCTestCase {
    private func failure(_ yaml: String, _ read: (ConfigReader) throws -> Void = { _ in }) -> String? {
        do {
            try read(try ConfigReader(yaml: yaml, allowed: ["a", "b", "list"]))
            return nil
        } catch {
            return "\(error)"
        }
    }

    func testErrorsNameTheKeyPathAndWhatWasExpected() {
        XCTAssertEqual(failure("c: 1"), "c: unknown field (allowed: a, b, list)")
        XCTAssertTrue(failure("a: 1\na: 2")?.contains("duplicated key(s): 'a'") == true, "a key given twice is refused")
        XCTAssertEqual(failure("- x"), "(top level) must be a mapping of fields")
        XCTAssertEqual(failure("a: {b: soon}") { _ = try $0.map("a")?.duration("b") },
                       "a.b: invalid duration \"soon\" (use a Go duration such as 250ms, 2s or 1m30s)")
        XCTAssertEqual(failure("list: [{n: 1}, {n: -1}]") { reader in
            for item in try reader.list("list") { _ = try item.int("n") }
        }, "list[1].n must be a non-negative integer")
        XCTAssertEqual(failure("a: [1]") { _ = try $0.string("a") }, "a must be a single value")
        XCTAssertEqual(failure("a: maybe") { _ = try $0.bool("a") }, "a must be true or false")
        XCTAssertEqual(failure("a: 11") { _ = try $0.int("a", 1...10) }, "a must be an integer from 1 to 10")
        XCTAssertTrue(failure("a: [b: 1")?.hasPrefix("not valid YAML") == true)
    }

    func testErrorsNameTheFile() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("config-\(UUID().uuidString).yaml").path
        try "a:\n  b: x\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let reader = try ConfigReader(file: file)
        XCTAssertThrowsError(try reader.map("a")?.int("b")) { XCTAssertEqual("\($0)", "\(file): a.b must be a non-negative integer") }
        XCTAssertThrowsError(try ConfigReader(file: file + ".missing")) { XCTAssertEqual("\($0)", "\(file).missing: cannot read the file") }
    }

    func testNullIsAbsentAndAnEmptyDocumentIsEmpty() throws {
        XCTAssertTrue(try ConfigReader(yaml: "").entries.isEmpty)
        let reader = try ConfigReader(yaml: "a: ~\nb:\nlist: null")
        XCTAssertFalse(reader.has("a"))
        XCTAssertNil(try reader.string("b"))
        XCTAssertEqual(try reader.strings("list"), [])
        XCTAssertEqual(try ConfigReader(yaml: "a: ''").string("a"), "", "a quoted empty string is a value")
    }

    func testValuesKeepDocumentOrderAndConvertToJSONWithYAMLTypes() throws {
        let reader = try ConfigReader(yaml: "z: 1\na: {flag: true, ratio: 0.5, name: web, port: \"8080\", none: ~, tags: [x]}")
        XCTAssertEqual(reader.entries.map(\.key), ["z", "a"])
        let json = try XCTUnwrap(reader["a"]?.json().objectValue)
        XCTAssertEqual(json.pairs.map(\.key), ["flag", "ratio", "name", "port", "none", "tags"])
        XCTAssertEqual(json[exact: "flag"], .bool(true))
        XCTAssertEqual(json[exact: "ratio"], .double(0.5))
        XCTAssertEqual(json[exact: "port"], .string("8080"), "a quoted number stays a string")
        XCTAssertEqual(json[exact: "none"], .null)
        XCTAssertEqual(reader.json.objectValue?[exact: "z"], .int(1))
    }
}
