import NIOCore
@testable import Sidecar
import XCTest

final class BodyFramerTests: XCTestCase {
    /// Feeds `text` in pieces of `step` bytes; returns what was emitted, whether the body ended,
    /// and what was left after it.
    private func frame(_ length: BodyLength, _ text: String, step: Int, dechunk: Bool = false) throws -> (out: String, ended: Bool, rest: String) {
        var framer = BodyFramer(length, dechunk: dechunk)
        var out = ""
        var pending = ByteBuffer()
        var input = ByteBuffer(string: text)
        var ended = false
        while !ended, let piece = input.readSlice(length: min(step, input.readableBytes)), piece.readableBytes > 0 {
            var piece = piece
            pending.writeBuffer(&piece)
            ended = try framer.read(&pending) { out += String(buffer: $0) }
        }
        pending.writeBuffer(&input)
        return (out, ended, String(buffer: pending))
    }

    func testALengthDelimitedBodyEndsAtItsLength() throws {
        for step in [1, 3, 100] {
            let result = try frame(.length(5), "helloGET /", step: step)
            XCTAssertEqual(result.out, "hello")
            XCTAssertTrue(result.ended)
            XCTAssertEqual(result.rest, "GET /")
        }
    }

    func testAChunkedBodyPassesThroughWhole() throws {
        let body = "5;name=v\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Checksum: 1\r\n\r\n"
        for step in [1, 2, 7, 1000] {
            let passed = try frame(.chunked, body + "NEXT", step: step)
            XCTAssertEqual(passed.out, body, "step \(step)")
            XCTAssertTrue(passed.ended)
            XCTAssertEqual(passed.rest, "NEXT")
            let data = try frame(.chunked, body, step: step, dechunk: true)
            XCTAssertEqual(data.out, "helloabcdefghijklmnopqrstuvwxyz")
        }
    }

    func testMalformedChunksAreRefused() {
        for bad in ["x\r\n", "5\r\nhelloXY", "5\nhello\r\n", "0\r\n\nX: 1\r\n\r\n", "fffffffffffffffff\r\n", "0\r\nX: 1\n\r\n"] {
            XCTAssertThrowsError(try frame(.chunked, bad, step: 100), bad)
        }
    }

    func testABodyWithoutLengthNeverEnds() throws {
        let result = try frame(.untilClose, "all of it", step: 4)
        XCTAssertEqual(result.out, "all of it")
        XCTAssertFalse(result.ended)
    }
}
