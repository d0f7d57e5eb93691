import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import TrellisHTTP
import XCTest

/// Echoes the method, path and body; `/wait` answers only when the client goes away.
private struct EchoResponder: HTTPResponder {
    func respond(to request: HTTPRequest, on eventLoop: any EventLoop, cancellation: CancellationSignal) -> EventLoopFuture<HTTPResponse> {
        if request.path == "/wait" {
            let promise = eventLoop.makePromise(of: HTTPResponse.self)
            cancellation.onCancel { promise.succeed(.text(.ok, "cancelled")) }
            return promise.futureResult
        }
        let text = "\(request.method) \(request.path) q=\(request.query["q"] ?? "-") body=\(String(buffer: request.body))"
        return eventLoop.makeSucceededFuture(.text(.ok, text))
    }
}

final class HTTPServerTests: XCTestCase {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    override func tearDown() async throws {
        try await group.shutdownGracefully()
    }

    private func start(maxBodySize: Int = 1024) async throws -> (HTTPServer, Int) {
        let server = try await HTTPServer.start(host: "127.0.0.1", port: 0, group: group, limits: HTTPLimits(maxBodySize: maxBodySize),
                                                responder: EchoResponder(), logger: Logger(label: "test"))
        return (server, server.localAddress.port!)
    }

    func testARequestAndItsBodyReachTheResponderOverLoopback() async throws {
        let (server, port) = try await start()
        let client = HTTPClient(group: group)
        let response = try await client.send(.PUT, host: "127.0.0.1", port: port, path: "/v1/kv/a?q=1",
                                              body: ByteBuffer(string: "value"), timeout: .seconds(5))
        XCTAssertEqual(response.status, .ok)
        XCTAssertEqual(String(buffer: response.body), "PUT /v1/kv/a q=1 body=value")
        await server.close()
    }

    func testABodyOverTheLimitIsRefusedWith413() async throws {
        let (server, port) = try await start(maxBodySize: 16)
        let client = HTTPClient(group: group)
        let response = try await client.send(.PUT, host: "127.0.0.1", port: port, path: "/big",
                                              body: ByteBuffer(repeating: 0x61, count: 17), timeout: .seconds(5))
        XCTAssertEqual(response.status, .payloadTooLarge)
        await server.close()
    }

    func testTheClientGivesUpAtItsTimeoutWhenTheServerDoesNotAnswer() async throws {
        let (server, port) = try await start()
        let client = HTTPClient(group: group)
        do {
            _ = try await client.send(.GET, host: "127.0.0.1", port: port, path: "/wait", timeout: .milliseconds(200))
            XCTFail("the server never answers")
        } catch {
            XCTAssertFalse(HTTPClient.describe(error).isEmpty)
        }
        await server.close()
    }
}
