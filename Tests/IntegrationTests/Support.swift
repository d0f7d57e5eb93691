import ConsulClient
import Foundation
import TrellisCore
import TrellisHTTP
import XCTest

/// Where the real `trellis` binary is: `$TRELLIS_BIN`, else the debug build of this checkout.
enum TrellisBinary {
    static var path: String {
        if let path = ProcessInfo.processInfo.environment["TRELLIS_BIN"] { return path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/trellis").path
    }
}

/// A temporary directory removed when the test ends.
func temporaryDirectory(_ test: XCTestCase) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("trellis-it-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    return dir
}

/// Runs `executable` to its end, with `environment` added to this process's; returns its exit
/// status and everything it wrote (stdout and stderr).
func runToEnd(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}

/// A child process whose stdout lines can be awaited.
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var lines: [String] = []
    private var partial = ""

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { $1 }
        process.environment = env
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.standardError
        process.standardInput = FileHandle.nullDevice
        out.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.lock()
            self.partial += String(decoding: data, as: UTF8.self)
            while let newline = self.partial.firstIndex(of: "\n") {
                self.lines.append(String(self.partial[..<newline]))
                self.partial = String(self.partial[self.partial.index(after: newline)...])
            }
            self.lock.unlock()
        }
        try process.run()
    }

    var output: [String] { lock.lock(); defer { lock.unlock() }; return lines }

    /// Waits for a stdout line containing `marker` and returns it.
    func waitForLine(containing marker: String, timeout: TimeInterval = 30) async throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = output.first(where: { $0.contains(marker) }) { return line }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ProcessNeverPrinted(marker: marker, output: output)
    }

    /// SIGTERM, then SIGKILL if the process is still running after `grace` seconds (a child that
    /// ignores SIGTERM must not hang the test run).
    func terminate(grace: TimeInterval = 10) {
        if process.isRunning { process.terminate() }
        let deadline = Date().addingTimeInterval(grace)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        kill9()
    }

    func kill9() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

struct ProcessNeverPrinted: Error, CustomStringConvertible {
    let marker: String
    let output: [String]
    var description: String { "process never printed \"\(marker)\"; output: \(output)" }
}

/// A real `trellis registry` on a free loopback port, with a data dir that outlives restarts.
final class RegistryUnderTest: @unchecked Sendable {
    let dataDir: String
    let node: String
    /// Further `trellis registry` flags (such as the store).
    let arguments: [String]
    private(set) var child: ChildProcess?
    private(set) var address = ""
    var client: ConsulClient { ConsulClient(address: address) }

    init(dataDir: String, node: String = "node-1", arguments: [String] = []) {
        self.dataDir = dataDir
        self.node = node
        self.arguments = arguments
    }

    static func start(_ test: XCTestCase, environment: [String: String] = [:]) async throws -> RegistryUnderTest {
        let registry = RegistryUnderTest(dataDir: try temporaryDirectory(test))
        try await registry.start(environment: environment)
        test.addTeardownBlock { registry.child?.kill9() }
        return registry
    }

    func start(environment: [String: String] = [:], port: Int = 0) async throws {
        let child = try ChildProcess(TrellisBinary.path, ["registry", "--http-addr", "127.0.0.1:\(port)", "--data-dir", dataDir,
                                                         "--node", node, "--log-level", "warning"] + arguments,
                                     environment: environment)
        self.child = child
        let line = try await child.waitForLine(containing: "listening on http://")
        address = String(line.split(separator: " ").first { $0.hasPrefix("http://") }!.dropFirst(7))
    }

    /// `kill -9`, then start again on the same port and data.
    func crashAndRestart() async throws {
        let port = Int(address.split(separator: ":").last!)!
        child?.kill9()
        try await start(port: port)
    }

    func get(_ path: String) async throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        try await client.send("GET", path)
    }

    func put(_ path: String, _ body: String? = nil) async throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        try await client.send("PUT", path, body: body.map { Array($0.utf8) })
    }

    func json(_ path: String) async throws -> JSON {
        let (status, _, body) = try await get(path)
        XCTAssertEqual(status, 200, "GET \(path): \(String(decoding: body, as: UTF8.self))")
        return try JSON.parse(body)
    }
}

/// A real single-member etcd (Debian's `etcd-server`) on free loopback ports, with its data in a
/// directory of its own so that it can be killed and started again on the same data.
final class EtcdUnderTest: @unchecked Sendable {
    let dataDir: String
    let clientPort: Int
    private let peerPort: Int
    private var process: Process?

    var endpoint: String { "http://127.0.0.1:\(clientPort)" }

    init(_ test: XCTestCase) async throws {
        dataDir = try temporaryDirectory(test) + "/etcd"
        clientPort = try Self.freePort()
        peerPort = try Self.freePort()
        try await start()
        test.addTeardownBlock { [self] in kill9() }
    }

    func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/etcd")
        process.arguments = ["--name", "test", "--data-dir", dataDir,
                             "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
                             "--listen-peer-urls", "http://127.0.0.1:\(peerPort)",
                             "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPort)",
                             "--initial-cluster", "test=http://127.0.0.1:\(peerPort)"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        try await eventually(timeout: 20, "etcd answers on \(endpoint)") {
            let client = ConsulClient(address: "127.0.0.1:\(clientPort)")
            return (try? await client.send("GET", "/health", timeout: 1))?.status == 200
        }
    }

    func kill9() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// A port below the ephemeral range that nothing holds right now.
    private static func freePort() throws -> Int {
        let held = try HeldPort.hold(0, for: "etcd under test")
        held.release()
        return held.port
    }
}

/// A throwaway HTTP server (python3) whose answer status can be changed through a file. The body
/// says `status N port P bytes B sha S` (size and SHA-256 of a POST body) and echoes the request
/// headers, one `name: value` per line. Paths under `/slow` answer after 1.5 s.
final class ScriptedHTTPServer: @unchecked Sendable {
    let port: Int
    private let statusFile: String
    private let child: ChildProcess

    /// `keepAlive` answers HTTP/1.1 and keeps connections open (closing them after `idleTimeout` seconds);
    /// every accepted connection is printed as a `connection` line.
    /// `tls` serves HTTPS with a fresh self-signed certificate.
    init(_ test: XCTestCase, status: Int = 200, keepAlive: Bool = false, idleTimeout: Double = 60, tls: Bool = false) async throws {
        let dir = try temporaryDirectory(test)
        if tls {
            let openssl = try ChildProcess("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                                                               "-subj", "/CN=localhost", "-keyout", dir + "/key.pem",
                                                               "-out", dir + "/cert.pem"])
            openssl.process.waitUntilExit()
        }
        statusFile = dir + "/status"
        try String(status).write(toFile: statusFile, atomically: true, encoding: .utf8)
        let script = """
        import hashlib, http.server, sys, time
        status_file = sys.argv[1]
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if sys.argv[2] == "1" else "HTTP/1.0"
            timeout = float(sys.argv[3])
            def setup(self):
                super().setup()
                print("connection %d" % self.client_address[1], flush=True)
            def do_GET(self, received=b""):
                if self.path.startswith("/slow"):
                    time.sleep(1.5)
                code = int(open(status_file).read().strip())
                body = ("status %d port %d bytes %d sha %s\\n" % (code, self.server.server_address[1], len(received),
                                                                   hashlib.sha256(received).hexdigest())
                        + "".join("%s: %s\\n" % (k.lower(), v) for k, v in self.headers.items())).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def do_POST(self):
                received = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                print("post %d" % len(received), flush=True)
                self.do_GET(received)
            def log_message(self, *args): pass
        s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        if sys.argv[4]:
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(sys.argv[4] + "/cert.pem", sys.argv[4] + "/key.pem")
            s.socket = context.wrap_socket(s.socket, server_side=True)
        print("port %d" % s.server_address[1], flush=True)
        s.serve_forever()
        """
        let process = try ChildProcess("/usr/bin/env", ["python3", "-c", script, statusFile, keepAlive ? "1" : "0",
                                                        String(idleTimeout), tls ? dir : ""])
        child = process
        test.addTeardownBlock { process.kill9() }
        let line = try await process.waitForLine(containing: "port ")
        port = Int(line.split(separator: " ")[1])!
    }

    func answer(_ status: Int) throws {
        try String(status).write(toFile: statusFile, atomically: true, encoding: .utf8)
    }

    func stop() { child.kill9() }

    /// The request headers a response body echoes, by lower-cased name.
    static func echoedHeaders(_ body: [UInt8]) -> [String: String] {
        var headers: [String: String] = [:]
        for line in String(decoding: body, as: UTF8.self).split(separator: "\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[String(line[..<colon])] = String(line[line.index(after: colon)...].dropFirst())
        }
        return headers
    }

    /// How many POST requests the server has received.
    var postsReceived: Int { child.output.filter { $0.hasPrefix("post ") }.count }

    /// How many connections the server has accepted so far.
    var connectionsAccepted: Int { child.output.filter { $0.hasPrefix("connection ") }.count }
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: TimeInterval = 10, _ message: String, _ condition: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    XCTFail("timed out: \(message)")
}

/// Python helpers of the raw-socket scripts that test listeners: `response(s)` reads one answer and
/// returns its status line; `read_until_closed(s, limit)` returns what arrived within `limit`
/// seconds and whether the server closed the connection.
let pythonSocketHelpers = """
import socket, sys, time
def response(s):
    data = b""
    while b"\\r\\n\\r\\n" not in data:
        data += s.recv(65536)
    head, body = data.split(b"\\r\\n\\r\\n", 1)
    length = int([l.split(b":")[1] for l in head.split(b"\\r\\n") if l.lower().startswith(b"content-length")][0])
    while len(body) < length:
        body += s.recv(65536)
    return head.split(b"\\r\\n")[0].decode()
def read_until_closed(s, limit):
    s.settimeout(limit)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except (socket.timeout, ConnectionResetError):
        return data, False

"""
