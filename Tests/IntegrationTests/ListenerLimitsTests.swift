import TrellisCore
import XCTest

/// The registry's HTTP listener refuses what breaks its limits, before any of it is read, and
/// changes nothing stored: header count and size (431), slow heads and bodies (408), idle
/// keep-alive connections (closed), connections per client (429).
final class ListenerLimitsTests: XCTestCase {
    private func startRegistry() async throws -> RegistryUnderTest {
        let dir = try temporaryDirectory(self)
        let config = dir + "/registry.yaml"
        try "limits:\n  http_max_conns_per_client: 3\nhttp_config:\n  max_header_bytes: 4096\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let registry = RegistryUnderTest(dataDir: dir + "/data", arguments: ["--config", config, "--request-headers-timeout", "1s",
                                                                            "--request-body-timeout", "1s", "--idle-timeout", "2s"])
        try await registry.start()
        addTeardownBlock { registry.child?.kill9() }
        return registry
    }

    private let script = pythonSocketHelpers + """
    port = int(sys.argv[1])
    def connect():
        return socket.create_connection(("127.0.0.1", port))
    def status_of(request):
        s = connect()
        s.sendall(request)
        data, closed = read_until_closed(s, 5)
        s.close()
        return data.split(b"\\r\\n")[0].decode()
    get = b"GET /v1/kv/kept HTTP/1.1\\r\\nHost: x\\r\\n"
    print("count|" + status_of(get + b"".join(b"X-H%d: v\\r\\n" % i for i in range(101)) + b"\\r\\n"))
    print("field|" + status_of(get + b"X-Big: " + b"a" * 5000 + b"\\r\\n\\r\\n"))
    print("small|" + status_of(get + b"X-Big: " + b"a" * 3000 + b"\\r\\nConnection: close\\r\\n\\r\\n"))
    s = connect()
    s.sendall(get)
    started = time.time()
    data, closed = read_until_closed(s, 6)
    print("slow|%s|%s|%d" % (data.split(b"\\r\\n")[0].decode(), closed, time.time() - started < 4))
    s = connect()
    s.sendall(b"PUT /v1/kv/short HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 100\\r\\n\\r\\nonly ten b")
    started = time.time()
    data, closed = read_until_closed(s, 6)
    print("short|%s|%s|%d" % (data.split(b"\\r\\n")[0].decode(), closed, time.time() - started < 4))
    s = connect()
    s.sendall(get + b"\\r\\n")
    status = response(s)
    data, closed = read_until_closed(s, 6)
    print("idle|%s|%s" % (status, closed))
    s = connect()
    s.sendall(b"GET /v1/kv/kept?index=%s&wait=3s HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" % sys.argv[2].encode())
    s.settimeout(10)
    started = time.time()
    print("blocking|%s|%d" % (response(s), time.time() - started >= 2.5))
    s.close()
    held = [connect() for _ in range(3)]
    for h in held:
        h.sendall(get + b"\\r\\n")
        response(h)
    fourth = connect()
    data, closed = read_until_closed(fourth, 5)
    print("fourth|%s|%s" % (data.split(b"\\r\\n")[0].decode(), closed))
    held.pop().close()
    time.sleep(0.5)
    print("after|" + status_of(get + b"Connection: close\\r\\n\\r\\n"))
    """

    func testHeaderSlowHeadIdleAndPerClientLimits() async throws {
        let registry = try await startRegistry()
        let (status, headers, _) = try await registry.put("/v1/kv/kept", "value")
        XCTAssertEqual(status, 200)
        _ = headers
        let index = try await registry.get("/v1/kv/kept").headers["x-consul-index"] ?? "1"
        let port = String(registry.address.split(separator: ":").last!)
        let run = try runToEnd("/usr/bin/env", ["python3", "-c", script, port, index])
        XCTAssertEqual(run.status, 0, run.output)
        let lines = Set(run.output.split(separator: "\n").map(String.init))
        XCTAssertTrue(lines.contains("count|HTTP/1.1 431 Request Header Fields Too Large"), "101 header fields: \(run.output)")
        XCTAssertTrue(lines.contains("field|HTTP/1.1 431 Request Header Fields Too Large"), "a field over max_header_bytes: \(run.output)")
        XCTAssertTrue(lines.contains("small|HTTP/1.1 200 OK"), "a field under max_header_bytes: \(run.output)")
        XCTAssertTrue(lines.contains("slow|HTTP/1.1 408 Request Timeout|True|1"), "a trickled head: \(run.output)")
        XCTAssertTrue(lines.contains("short|HTTP/1.1 408 Request Timeout|True|1"), "a body short of its Content-Length: \(run.output)")
        XCTAssertTrue(lines.contains("idle|HTTP/1.1 200 OK|True"), "an idle keep-alive connection is closed: \(run.output)")
        XCTAssertTrue(lines.contains("blocking|HTTP/1.1 200 OK|1"), "a blocking query outlives the idle timeout: \(run.output)")
        XCTAssertTrue(lines.contains("fourth|HTTP/1.1 429 Too Many Requests|True"), "a fourth connection from one client: \(run.output)")
        XCTAssertTrue(lines.contains("after|HTTP/1.1 200 OK"), "a connection is admitted again once one closed: \(run.output)")
        let kept = try await registry.get("/v1/kv/kept?raw")
        XCTAssertEqual(String(decoding: kept.body, as: UTF8.self), "value", "nothing stored changed")
        let short = try await registry.get("/v1/kv/short").status
        XCTAssertEqual(short, 404, "a body that never completed stored nothing")
    }
}
