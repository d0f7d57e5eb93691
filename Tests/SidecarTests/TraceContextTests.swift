import Foundation
import NIOCore
@testable import Sidecar
import XCTest

final class TraceContextTests: XCTestCase {
    /// The head the sidecar sends upstream for a GET with `fields`, parsed back.
    private func forwarded(_ fields: String, random: inout FastRandom) throws -> (trace: TraceContext, upstream: MessageHead) {
        let head = try parseRequest("GET / HTTP/1.1\r\nHost: x\r\n\(fields)\r\n")
        let trace = TraceContext(headers: head, random: &random)
        let upstream = HeaderRules.upstreamRequest(head, client: "127.0.0.1", trace: trace, allocator: ByteBufferAllocator())
        return (trace, try parseRequest(String(buffer: upstream)))
    }

    func testW3CParentKeepsTraceAndGetsNewSpan() throws {
        var random = FastRandom()
        let (trace, upstream) = try forwarded("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\ntracestate: a=b\r\n",
                                              random: &random)
        XCTAssertEqual(trace.traceID, "4bf92f3577b34da6a3ce929d0e0e4736")
        XCTAssertEqual(trace.parentSpanID, "00f067aa0ba902b7")
        let out = upstream.first(name: "traceparent")!
        XCTAssertTrue(out.hasPrefix("00-4bf92f3577b34da6a3ce929d0e0e4736-"))
        XCTAssertFalse(out.contains("00f067aa0ba902b7"))
        XCTAssertEqual(upstream.fields.filter { $0.kind == .traceparent }.count, 1, "the incoming traceparent is replaced")
        XCTAssertEqual(upstream.first(name: "tracestate"), "a=b")
        let requestID = Array(try XCTUnwrap(upstream.first(name: "x-request-id")))
        XCTAssertEqual(requestID.count, 36)
        XCTAssertEqual([8, 13, 18, 23].map { requestID[$0] }, ["-", "-", "-", "-"])
        XCTAssertEqual(requestID[14], "4", "a version 4 UUID")
        XCTAssertTrue("89ab".contains(requestID[19]), "of the RFC 4122 variant")
        XCTAssertEqual(String(requestID), trace.requestID)
    }

    func testInvalidTraceparentStartsANewTrace() throws {
        var random = FastRandom()
        for bad in ["00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-xyz-00f067aa0ba902b7-01", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"] {
            let trace = TraceContext(headers: try parseRequest("GET / HTTP/1.1\r\ntraceparent: \(bad)\r\n\r\n"), random: &random)
            XCTAssertNil(trace.parentSpanID, bad)
            XCTAssertEqual(trace.traceID.count, 32)
        }
    }

    func testB3SingleAndMultiAreAcceptedAndPropagatedInKind() throws {
        var random = FastRandom()
        let (a, single) = try forwarded("b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1\r\n", random: &random)
        XCTAssertEqual(a.traceID, "80f198ee56343ba864fe8b2a57d3eff7")
        XCTAssertTrue(single.first(name: "b3")!.hasSuffix("-1-e457b5a2e4d86bd1"))

        let (b, multi) = try forwarded("X-B3-TraceId: 64fe8b2a57d3eff7\r\nX-B3-SpanId: 05e3ac9a4f6e3b90\r\nX-B3-Sampled: 0\r\n", random: &random)
        XCTAssertEqual(b.traceID, "000000000000000064fe8b2a57d3eff7")
        XCTAssertFalse(b.sampled)
        XCTAssertEqual(multi.first(name: "x-b3-parentspanid"), "05e3ac9a4f6e3b90")
        XCTAssertEqual(multi.first(name: "x-b3-spanid"), b.spanID)
        XCTAssertEqual(multi.fields.filter { $0.kind == .b3Multi }.count, 4, "the incoming B3 fields are replaced")
        XCTAssertEqual(multi.first(name: "traceparent")?.hasSuffix("-00"), true)
    }
}
