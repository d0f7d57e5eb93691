import Foundation
import Logging
import Telemetry
import XCTest

final class JSONLogHandlerTests: XCTestCase {
    /// What `body` writes to standard error.
    private func standardError(_ body: () -> Void) -> String {
        let pipe = Pipe()
        let saved = dup(2)
        dup2(pipe.fileHandleForWriting.fileDescriptor, 2)
        body()
        dup2(saved, 2)
        close(saved)
        try? pipe.fileHandleForWriting.close()
        return String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    func testOneJSONObjectPerLineWithTheFixedKeysFirstThenSortedMetadata() throws {
        var logger = Logger(label: "trellis.sidecar") { JSONLogHandler(label: $0) }
        logger[metadataKey: "service"] = "orders"
        let text = standardError {
            logger.info("policy applied", metadata: ["key": "trellis/policies/orders", "attempts": "2"])
            logger.debug("below the level")
        }
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, text)
        let line = try XCTUnwrap(lines.first)
        XCTAssertTrue(line.hasPrefix(#"{"ts":""#), String(line))
        XCTAssertTrue(line.hasSuffix(#","level":"info","logger":"trellis.sidecar","msg":"policy applied","attempts":"2","key":"trellis/policies/orders","service":"orders"}"#),
                      String(line))
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        let timestamp = try XCTUnwrap(object["ts"])
        XCTAssertNotNil(try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(timestamp), timestamp)
    }

    func testMessagesAreEscapedAsJSONStrings() throws {
        let logger = Logger(label: "t") { JSONLogHandler(label: $0) }
        let text = standardError { logger.warning("a \"quoted\"\nline\u{1}") }
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String])
        XCTAssertEqual(object["msg"], "a \"quoted\"\nline\u{1}")
        XCTAssertEqual(text.filter { $0 == "\n" }.count, 1, "one line, whatever the message holds")
    }
}
