import TrellisCore
import XCTest

/// Request framing the registry must refuse (RFC 9112 §3.2, §6, §7; the request-smuggling shapes
/// proxies disagree on), each sent raw on its own connection: every one gets a 400 and stores
/// nothing, while the well-formed controls get a 200.
final class HTTPFramingTests: XCTestCase {
    /// Name, request (its key is the name), and the status expected.
    private let cases: [(String, String, Int)] = [
        ("cl-te", "PUT /v1/kv/cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("te-cl", "PUT /v1/kv/te-cl HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
        ("two-lengths", "PUT /v1/kv/two-lengths HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        ("length-list", "PUT /v1/kv/length-list HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
        ("signed-length", "PUT /v1/kv/signed-length HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400),
        ("chunked-not-last", "PUT /v1/kv/chunked-not-last HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
        ("space-in-name", "PUT /v1/kv/space-in-name HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
        ("bare-lf-chunks", "PUT /v1/kv/bare-lf-chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n", 400),
        ("bare-lf-head", "PUT /v1/kv/bare-lf-head HTTP/1.1\nHost: x\nContent-Length: 3\n\nabc", 400),
        ("obs-fold", "PUT /v1/kv/obs-fold HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\nContent-Length: 3\r\n\r\nabc", 400),
        ("bad-chunk-size", "PUT /v1/kv/bad-chunk-size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
        ("huge-chunk-size", "PUT /v1/kv/huge-chunk-size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n", 400),
        ("nul-in-value", "PUT /v1/kv/nul-in-value HTTP/1.1\r\nHost: x\r\nX-A: a\u{0}b\r\nContent-Length: 3\r\n\r\nabc", 400),
        ("no-host", "PUT /v1/kv/no-host HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 400),
        ("two-hosts", "PUT /v1/kv/two-hosts HTTP/1.1\r\nHost: x\r\nHost: y\r\nContent-Length: 3\r\n\r\nabc", 400),
        ("te-in-1.0", "PUT /v1/kv/te-in-1.0 HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
        ("control-length", "PUT /v1/kv/control-length HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc", 200),
        ("control-chunked", "PUT /v1/kv/control-chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n", 200),
        ("control-1.0", "PUT /v1/kv/control-1.0 HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", 200),
    ]

    private let script = """
    import socket, sys, json
    port = int(sys.argv[1])
    for name, request in json.load(sys.stdin):
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(5)
        s.sendall(request.encode("latin-1"))
        data = b""
        try:
            while b"\\r\\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        s.close()
        line = data.split(b"\\r\\n")[0].decode()
        print("%s|%s" % (name, line.split(" ")[1] if " " in line else "none"))
    """

    func testMalformedFramingIsRefusedAndStoresNothing() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let input = String(decoding: try JSONSerialization.data(withJSONObject: cases.map { [$0.0, $0.1] }), as: UTF8.self)
        let run = try runToEnd("/bin/sh", ["-c", "printf '%s' \"$1\" | python3 -c \"$2\" \"$3\"", "sh", input, script,
                                           String(registry.address.split(separator: ":").last!)])
        XCTAssertEqual(run.status, 0, run.output)
        let statuses = Dictionary(uniqueKeysWithValues: run.output.split(separator: "\n").compactMap { line -> (String, String)? in
            let parts = line.split(separator: "|").map(String.init)
            return parts.count == 2 ? (parts[0], parts[1]) : nil
        })
        for (name, _, expected) in cases {
            XCTAssertEqual(statuses[name], String(expected), "\(name): \(run.output)")
            let stored = try await registry.get("/v1/kv/\(name)").status
            XCTAssertEqual(stored, expected == 200 ? 200 : 404, "\(name) stored only when accepted")
        }
    }
}
