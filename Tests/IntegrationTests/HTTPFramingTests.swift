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

    /// The status each case got from the server on `port`, by case name.
    private func statuses(port: String, _ cases: [(String, String, Int)]) throws -> [String: String] {
        let input = String(decoding: try JSONSerialization.data(withJSONObject: cases.map { [$0.0, $0.1] }), as: UTF8.self)
        let run = try runToEnd("/bin/sh", ["-c", "printf '%s' \"$1\" | python3 -c \"$2\" \"$3\"", "sh", input, script, port])
        XCTAssertEqual(run.status, 0, run.output)
        return Dictionary(uniqueKeysWithValues: run.output.split(separator: "\n").compactMap { line -> (String, String)? in
            let parts = line.split(separator: "|").map(String.init)
            return parts.count == 2 ? (parts[0], parts[1]) : nil
        })
    }

    func testMalformedFramingIsRefusedAndStoresNothing() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let statuses = try statuses(port: String(registry.address.split(separator: ":").last!), cases)
        for (name, _, expected) in cases {
            XCTAssertEqual(statuses[name], String(expected), "\(name): \(statuses)")
            let stored = try await registry.get("/v1/kv/\(name)").status
            XCTAssertEqual(stored, expected == 200 ? 200 : 404, "\(name) stored only when accepted")
        }
    }

    /// The collector's listener is the same server: every refused case, sent as a Loki push, gets its 400.
    func testTheCollectorRefusesTheSameFraming() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let collector = try await CollectorUnderTest(self, registry: registry)
        let refused = cases.filter { $0.2 == 400 }.map { name, request, status in
            (name, request.replacingOccurrences(of: "PUT /v1/kv/\(name) ", with: "POST /loki/api/v1/push "), status)
        }
        let statuses = try statuses(port: String(collector.port), refused)
        for (name, _, expected) in refused { XCTAssertEqual(statuses[name], String(expected), "\(name): \(statuses)") }
        let ready = try await collector.client.send("GET", "/ready").status
        XCTAssertEqual(ready, 200)
    }

    /// Exchanges the RFCs define beyond framing: the absolute and asterisk forms, `Expect`, HEAD,
    /// HTTP/1.0 keep-alive and pipelining, each conversation checked byte by byte where it matters.
    func testTargetFormsExpectationsHeadKeepAliveAndPipelining() async throws {
        let registry = try await RegistryUnderTest.start(self)
        let script = """
        import socket, sys
        port = int(sys.argv[1])
        def connect():
            s = socket.create_connection(("127.0.0.1", port))
            s.settimeout(5)
            return s
        def read_response(s, head_only=False):
            data = b""
            while b"\\r\\n\\r\\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    return data, b""
                data += chunk
            head, rest = data.split(b"\\r\\n\\r\\n", 1)
            lines = head.split(b"\\r\\n")
            length = 0
            for l in lines[1:]:
                if l.lower().startswith(b"content-length:"):
                    length = int(l.split(b":")[1])
            if head_only:
                return head, rest
            while len(rest) < length:
                rest += s.recv(65536)
            return head, rest[:length]
        def status(head):
            return head.split(b"\\r\\n")[0].decode()
        def header(head, name):
            for l in head.split(b"\\r\\n")[1:]:
                key, _, value = l.partition(b":")
                if key.strip().lower() == name:
                    return value.strip().decode()
            return "-"
        s = connect()
        s.sendall(b"GET http://registry.example/v1/kv/kv-absolute?raw HTTP/1.1\\r\\nHost: registry.example\\r\\nConnection: close\\r\\n\\r\\n")
        head, body = read_response(s)
        print("absolute|%s|%s" % (status(head), body.decode()))
        s = connect()
        s.sendall(b"OPTIONS * HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
        print("asterisk|%s" % status(read_response(s)[0]))
        s = connect()
        s.sendall(b"PUT /v1/kv/kv-expect HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 3\\r\\nExpect: 100-continue\\r\\nConnection: close\\r\\n\\r\\n")
        interim, _ = read_response(s, head_only=True)
        s.sendall(b"abc")
        final, body = read_response(s)
        print("expect|%s|%s|%s" % (status(interim), status(final), body.decode()))
        s = connect()
        s.sendall(b"PUT /v1/kv/kv-expect-big HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 5000000\\r\\nExpect: 100-continue\\r\\n\\r\\n")
        print("expect-too-large|%s" % status(read_response(s)[0]))
        s = connect()
        s.sendall(b"PUT /v1/kv/kv-expect-odd HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 3\\r\\nExpect: something\\r\\n\\r\\n")
        print("expect-other|%s" % status(read_response(s)[0]))
        s = connect()
        s.sendall(b"HEAD /v1/kv/kv-absolute?raw HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET /v1/kv/kv-absolute?raw HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
        head, rest = read_response(s, head_only=True)
        second, body = read_response(s) if not rest else (rest, b"")
        print("head|%s|%s|%s|%s" % (status(head), header(head, b"content-length"), status(second), body.decode()))
        s = connect()
        s.sendall(b"GET /v1/status/leader HTTP/1.0\\r\\nConnection: keep-alive\\r\\n\\r\\n")
        head, _ = read_response(s)
        s.sendall(b"GET /v1/status/leader HTTP/1.0\\r\\n\\r\\n")
        again, _ = read_response(s)
        print("keepalive-1.0|%s|%s|%s|%s" % (status(head), header(head, b"connection"), status(again), header(again, b"connection")))
        s = connect()
        s.sendall(b"GET /v1/kv/kv-absolute?raw HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nGET /v1/status/peers HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
        first, a = read_response(s)
        second, b = read_response(s)
        print("pipelined|%s|%s|%s" % (a.decode(), status(second), b.decode()))
        """
        let (status, _, _) = try await registry.put("/v1/kv/kv-absolute", "stored")
        XCTAssertEqual(status, 200)
        let run = try runToEnd("/usr/bin/env", ["python3", "-c", script, String(registry.address.split(separator: ":").last!)])
        XCTAssertEqual(run.status, 0, run.output)
        let lines = Set(run.output.split(separator: "\n").map(String.init))
        let expected = [
            "absolute|HTTP/1.1 200 OK|stored",
            "asterisk|HTTP/1.1 200 OK",
            "expect|HTTP/1.1 100 Continue|HTTP/1.1 200 OK|true",
            "expect-too-large|HTTP/1.1 413 Payload Too Large",
            "expect-other|HTTP/1.1 417 Expectation Failed",
            "head|HTTP/1.1 200 OK|6|HTTP/1.1 200 OK|stored",
            "keepalive-1.0|HTTP/1.0 200 OK|keep-alive|HTTP/1.0 200 OK|close",
            #"pipelined|stored|HTTP/1.1 200 OK|["127.0.0.1:8300"]"#,
        ]
        for line in expected { XCTAssertTrue(lines.contains(line), "\(line) in: \(run.output)") }
        let expectStored = try await registry.get("/v1/kv/kv-expect?raw")
        XCTAssertEqual(String(decoding: expectStored.body, as: UTF8.self), "abc")
        for refused in ["kv-expect-big", "kv-expect-odd"] {
            let stored = try await registry.get("/v1/kv/\(refused)").status
            XCTAssertEqual(stored, 404, "\(refused) stored nothing")
        }
    }
}
