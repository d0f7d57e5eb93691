import NIOCore
@testable import Sidecar
import XCTest

final class HeaderRulesTests: XCTestCase {
    private let allocator = ByteBufferAllocator()

    func testTheUpstreamRequestDropsHopByHopFieldsAndAddsForwardingOnes() throws {
        var random = FastRandom()
        let head = try parseRequest("""
            GET /a HTTP/1.0\r\nHost: shop\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n\
            Expect: 100-continue\r\nX-Forwarded-For: 10.0.0.1\r\nAccept: */*\r\n\r\n
            """)
        let trace = TraceContext(headers: head, random: &random)
        let text = String(buffer: HeaderRules.upstreamRequest(head, client: "127.0.0.1", trace: trace, allocator: allocator))
        XCTAssertTrue(text.hasPrefix("GET /a HTTP/1.1\r\nHost: shop\r\nAccept: */*\r\nx-forwarded-for: 10.0.0.1, 127.0.0.1\r\nx-forwarded-proto: http\r\n"), text)
        for dropped in ["Connection", "X-Private", "Keep-Alive", "TE:", "Expect"] { XCTAssertFalse(text.contains(dropped), dropped) }
        XCTAssertTrue(text.contains("traceparent: 00-\(trace.traceID)-\(trace.spanID)-01\r\n"))
        XCTAssertTrue(text.hasSuffix("\r\n\r\n"))
    }

    func testTheClientResponseKeepsTheClientsVersionAndFraming() throws {
        var buffer = ByteBuffer(string: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\nConnection: close\r\nX-A: b\r\n\r\n")
        guard case .complete(let response) = HeadParser.response(from: &buffer, toHEAD: false) else { return XCTFail("not parsed") }
        XCTAssertTrue(HeaderRules.keepsClientOpen(true, clientMinorVersion: 1, response: response))
        XCTAssertFalse(HeaderRules.keepsClientOpen(true, clientMinorVersion: 0, response: response), "HTTP/1.0 cannot read chunked")
        let forHTTP11 = String(buffer: HeaderRules.downstreamResponse(response, clientMinorVersion: 1, keepAlive: true, dechunk: false,
                                                                       extra: nil, allocator: allocator))
        XCTAssertEqual(forHTTP11, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n")
        let forHTTP10 = String(buffer: HeaderRules.downstreamResponse(response, clientMinorVersion: 0, keepAlive: false, dechunk: true,
                                                                       extra: ByteBuffer(string: "X-RateLimit-Limit: 5\r\n"), allocator: allocator))
        XCTAssertEqual(forHTTP10, "HTTP/1.0 200 OK\r\nX-A: b\r\nconnection: close\r\nX-RateLimit-Limit: 5\r\n\r\n")
    }
}
