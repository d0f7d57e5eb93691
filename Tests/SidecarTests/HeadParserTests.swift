import NIOCore
@testable import Sidecar
import XCTest

struct NotComplete: Error {
    let outcome: String
}

/// Parses one whole request head from `text`.
func parseRequest(_ text: String) throws -> MessageHead {
    var buffer = ByteBuffer(string: text)
    guard case .complete(let head) = HeadParser.request(from: &buffer) else {
        throw NotComplete(outcome: "\(HeadParser.request(from: &buffer))")
    }
    return head
}


final class HeadParserTests: XCTestCase {
    private func refusal(_ text: String) -> Int? {
        var buffer = ByteBuffer(string: text)
        guard case .invalid(let status, _) = HeadParser.request(from: &buffer) else { return nil }
        return status
    }

    private func response(_ text: String, toHEAD: Bool = false) throws -> MessageHead {
        var buffer = ByteBuffer(string: text)
        guard case .complete(let head) = HeadParser.response(from: &buffer, toHEAD: toHEAD) else { throw NotComplete(outcome: text) }
        return head
    }

    func testARequestHeadIsReadWithItsFieldsAndFraming() throws {
        var buffer = ByteBuffer(string: "\r\nPOST /orders?x=1 HTTP/1.1\r\nHost: shop\r\nContent-Length:  12 \r\nX-Canary: 1\r\n\r\nhello")
        guard case .complete(let head) = HeadParser.request(from: &buffer) else { return XCTFail("not parsed") }
        XCTAssertEqual(head.method, "POST")
        XCTAssertEqual(head.target, "/orders?x=1")
        XCTAssertEqual(head.minorVersion, 1)
        XCTAssertEqual(head.body, .length(12))
        XCTAssertTrue(head.keepAlive)
        XCTAssertFalse(head.isIdempotent)
        XCTAssertEqual(head.first(name: "x-canary"), "1")
        XCTAssertEqual(head.first(name: "Content-Length"), "12", "values are trimmed, names case-insensitive")
        XCTAssertEqual(String(buffer: buffer), "hello", "the body stays in the buffer")
    }

    func testAnIncompleteHeadIsLeftInTheBuffer() {
        var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n")
        guard case .incomplete = HeadParser.request(from: &buffer) else { return XCTFail("should wait for more") }
        XCTAssertEqual(buffer.readableBytes, 25)
    }

    func testEmptyLinesBeforeARequestAreDroppedAsTheyCome() {
        var buffer = ByteBuffer(string: "\r\n\r\n\r\nGE")
        guard case .incomplete = HeadParser.request(from: &buffer) else { return XCTFail("should wait for more") }
        XCTAssertEqual(String(buffer: buffer), "GE", "a client cannot fill the sidecar with empty lines")
    }

    func testKeepAliveFollowsTheVersionAndConnectionHeader() throws {
        XCTAssertFalse(try parseRequest("GET / HTTP/1.0\r\n\r\n").keepAlive)
        XCTAssertTrue(try parseRequest("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keepAlive)
        XCTAssertFalse(try parseRequest("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n").keepAlive)
        XCTAssertEqual(try parseRequest("GET / HTTP/1.1\r\nConnection: X-Private\r\n\r\n").connectionNamed, ["x-private"])
    }

    func testAmbiguousOrMalformedRequestsAreRefused() {
        XCTAssertEqual(refusal("GET / HTTP/1.1\nHost: x\n\n"), 400, "bare LF")
        XCTAssertEqual(refusal("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n"), 400, "obs-fold")
        XCTAssertEqual(refusal("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), 400, "space before the colon")
        XCTAssertEqual(refusal("GET / HTTP/1.1\r\nX: a\u{1}b\r\n\r\n"), 400, "control character")
        XCTAssertEqual(refusal("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), 400, "bare CR")
        XCTAssertEqual(refusal("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), 400, "CL and TE")
        XCTAssertEqual(refusal("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"), 400, "two lengths")
        XCTAssertEqual(refusal("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400)
        XCTAssertEqual(refusal("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), 400, "chunked not last")
        XCTAssertEqual(refusal("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400, "TE in HTTP/1.0")
        XCTAssertEqual(refusal("GET / HTTP/2.0\r\n\r\n"), 505)
        XCTAssertEqual(refusal("NOT HTTP AT ALL\r\n\r\n"), 400)
        XCTAssertEqual(refusal("GET  / HTTP/1.1\r\n\r\n"), 400, "two spaces")
        XCTAssertEqual(refusal("GET / HTTP/1.1\r\nX: " + String(repeating: "v", count: 70_000)), 431)
        XCTAssertNil(refusal("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"), "the same length twice is one length")
    }

    func testMethodsAndFieldNamesAreTokensOfExactlyTheRFCCharacters() {
        let tchar = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        for byte in UInt8.min...UInt8.max {
            var method = ByteBuffer(bytes: [byte] + Array(" / HTTP/1.1\r\n\r\n".utf8))
            var field = ByteBuffer(bytes: Array("GET / HTTP/1.1\r\nX".utf8) + [byte] + Array(": v\r\n\r\n".utf8))
            var methodAccepted = false, fieldAccepted = false
            if case .complete = HeadParser.request(from: &method) { methodAccepted = true }
            if case .complete = HeadParser.request(from: &field) { fieldAccepted = true }
            XCTAssertEqual(methodAccepted, tchar.contains(byte), "method byte \(byte)")
            // `X:: v` is the field `X` with the value `: v`.
            XCTAssertEqual(fieldAccepted, tchar.contains(byte) || byte == UInt8(ascii: ":"), "field name byte \(byte)")
        }
    }

    func testResponseFramingFollowsTheRequestAndStatus() throws {
        XCTAssertEqual(try response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").body, .length(5))
        XCTAssertEqual(try response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", toHEAD: true).body, .none)
        XCTAssertEqual(try response("HTTP/1.1 204 No Content\r\n\r\n").body, .none)
        XCTAssertEqual(try response("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").body, .none)
        XCTAssertEqual(try response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n").body, .chunked)
        let unframed = try response("HTTP/1.1 200 OK\r\n\r\n")
        XCTAssertEqual(unframed.body, .untilClose)
        XCTAssertFalse(unframed.keepAlive, "a body that ends with the connection leaves nothing to reuse")
        XCTAssertEqual(try response("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").status, 200, "the reason phrase is optional")
    }
}
