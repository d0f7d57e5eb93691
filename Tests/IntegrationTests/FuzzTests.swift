import Foundation
import TrellisCore
import XCTest

/// Malformed and random requests never take the registry down or corrupt what it stored.
final class FuzzTests: XCTestCase {
    func testRandomRequestsNeitherCrashNorCorrupt() async throws {
        let registry = try await RegistryUnderTest.start(self)
        _ = try await registry.put("/v1/agent/service/register", #"{"Name":"keep","ID":"keep1","Port":1}"#)
        let port = registry.address.split(separator: ":").last!
        let script = """
        import json, random, socket, sys, time
        random.seed(int(sys.argv[2]))
        paths = ["/v1/agent/service/register", "/v1/agent/check/register", "/v1/catalog/register", "/v1/catalog/deregister",
                 "/v1/kv/fz/a", "/v1/kv/", "/v1/txn", "/v1/session/create", "/v1/agent/check/update/x",
                 "/v1/health/service/web", "/v1/agent/service/maintenance/keep1", "/v1/session/renew/", "/v1/agent/service/keep1"]
        queries = ["", "?index=99999999999999999999", "?wait=-1s", "?passing=maybe", "?filter=((", "?cas=abc",
                   "?acquire=zz", "?flags=18446744073709551616", "?recurse&keys&separator=", "?index=1&wait=1ms",
                   "?enable=true", "?%zz=%", "?hash=x&wait=1ms"]
        keys = ["Name", "ID", "Port", "Check", "Checks", "TTL", "HTTP", "Interval", "Tags", "Meta", "Node", "Address",
                "Service", "Verb", "Key", "Value", "KV", "LockDelay", "Behavior", "Status", "Weights", "Header"]
        def value(depth=0):
            r = random.random()
            if depth > 4 or r < 0.3:
                return random.choice([None, True, 1, -1, 2**70, 1.5e308, "x", "10s", "", "\\u0000", "é"])
            if r < 0.6:
                return [value(depth + 1) for _ in range(random.randint(0, 3))]
            return {random.choice(keys): value(depth + 1) for _ in range(random.randint(0, 5))}
        sent, deadline = 0, time.time() + 5
        while sent < 3000 and time.time() < deadline:
            method = random.choice(["GET", "PUT", "POST", "DELETE", "PATCH"])
            body = random.choice([json.dumps(value()).encode(), bytes(random.getrandbits(8) for _ in range(64)), b"[" * 300])
            request = ("%s %s%s HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: %d\\r\\n\\r\\n" % (
                method, random.choice(paths), random.choice(queries), len(body))).encode() + body
            if random.random() < 0.05:
                request = bytes(random.getrandbits(8) for _ in range(100))
            try:
                with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
                    s.sendall(request)
                    s.recv(65536)
            except OSError:
                pass
            sent += 1
        print("sent %d" % sent, flush=True)
        """
        let fuzzer = try ChildProcess("/usr/bin/env", ["python3", "-c", script, String(port), "7"])
        _ = try await fuzzer.waitForLine(containing: "sent ", timeout: 60)
        XCTAssertTrue(registry.child?.process.isRunning ?? false, "the registry survived")
        let kept = try await registry.json("/v1/agent/service/keep1")
        XCTAssertEqual(kept["Port"], .int(1))
        // The fuzzer may legitimately delete the whole KV tree; what must hold is that the store still works.
        let written = try await registry.put("/v1/kv/after/fuzz", "ok")
        XCTAssertEqual(written.status, 200)
        try await registry.crashAndRestart()
        let again = try await registry.json("/v1/agent/service/keep1")
        XCTAssertEqual(again["Service"], .string("keep"), "the store reopens cleanly after the storm")
        let (_, _, value) = try await registry.get("/v1/kv/after/fuzz?raw")
        XCTAssertEqual(String(decoding: value, as: UTF8.self), "ok")
    }
}
