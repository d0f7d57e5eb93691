import EventIO
import Foundation
import NIOCore
import Synchronization
import XCTest

/// What one side of a TLS connection saw: bytes, the peer's identity, the end and why.
private final class TLSRecorder: StreamSocketDelegate, @unchecked Sendable {
    private let state = Mutex<(bytes: [UInt8], identity: String?, closed: Bool, failure: String?, tls: Bool, resumed: Bool)>(
        ([], nil, false, nil, false, false))
    /// The session of the connection, once it has delivered bytes (touched on the reactor's thread only).
    nonisolated(unsafe) var session: TLSSession?
    /// Echoes what it reads (the server side).
    let echoes: Bool

    init(echoes: Bool = false) { self.echoes = echoes }

    func socketRead(_ socket: StreamSocket, _ bytes: ByteBuffer) {
        if session == nil { session = socket.tlsSession }
        state.withLock {
            $0.bytes += bytes.readableBytesView
            $0.identity = socket.peerIdentity
            $0.tls = socket.isTLS
            $0.resumed = socket.resumedTLSSession
        }
        if echoes {
            socket.write(bytes)
            socket.flush()
        }
    }
    func socketReadComplete(_ socket: StreamSocket) {}
    func socketWritabilityChanged(_ socket: StreamSocket) {}
    func socketClosed(_ socket: StreamSocket) {
        state.withLock {
            $0.closed = true
            $0.failure = socket.tlsFailure
        }
    }

    var bytes: [UInt8] { state.withLock { $0.bytes } }
    var identity: String? { state.withLock { $0.identity } }
    var closed: Bool { state.withLock { $0.closed } }
    var failure: String? { state.withLock { $0.failure } }
    var tls: Bool { state.withLock { $0.tls } }
    var resumed: Bool { state.withLock { $0.resumed } }
}

/// Mutual TLS through libssl on the reactor, with certificates made by the real `openssl` command.
final class TLSTransportTests: XCTestCase {
    private static let trustDomain = "11111111-2222-3333-4444-555555555555.consul"
    private var reactor: Reactor!
    private var dir = ""

    static func uri(_ service: String) -> String { "spiffe://\(trustDomain)/ns/default/dc/dc1/svc/\(service)" }

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // Two CAs; leaves for web and db from the first, an impostor "web" from the second.
        try shell("""
        set -e
        ca() { openssl ecparam -name prime256v1 -genkey -noout -out $1.key
               openssl req -x509 -new -key $1.key -subj /CN=$1 -days 1 -out $1.pem \
                 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign; }
        leaf() { openssl ecparam -name prime256v1 -genkey -noout -out $2.key
                 openssl req -new -key $2.key -subj /CN=$3 -out $2.csr
                 printf 'subjectAltName=URI:%s\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth,clientAuth\\n' "$4" > $2.ext
                 openssl x509 -req -in $2.csr -CA $1.pem -CAkey $1.key -CAcreateserial -days 1 -out $2.pem -extfile $2.ext; }
        ca mesh; ca other
        leaf mesh web web \(Self.uri("web"))
        leaf mesh db db \(Self.uri("db"))
        leaf other impostor web \(Self.uri("web"))
        """)
        reactor = try Reactor()
        reactor.start(name: "tls-test")
    }

    override func tearDown() {
        reactor?.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func shell(_ script: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        process.currentDirectoryURL = URL(fileURLWithPath: dir)
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, output)
    }

    private func context(_ name: String, server: Bool, roots: String = "mesh") throws -> TLSContext {
        try TLSContext(server: server, certificatePEM: String(contentsOfFile: "\(dir)/\(name).pem", encoding: .utf8),
                       privateKeyPEM: String(contentsOfFile: "\(dir)/\(name).key", encoding: .utf8),
                       rootsPEM: String(contentsOfFile: "\(dir)/\(roots).pem", encoding: .utf8))
    }

    private func eventually(_ message: String, _ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(10)
        while !condition() {
            if Date() > deadline { return XCTFail("timed out: \(message)") }
            usleep(10_000)
        }
    }

    /// A listener whose connections start TLS with `server` (or take both with `permissive`), and a
    /// client connected to it that starts TLS with `client` expecting `expected` (plaintext when nil).
    private func connect(server: TLSContext, permissive: Bool = false, client: TLSContext?, expected: String?,
                         resuming session: TLSSession? = nil, payload: [UInt8]) throws -> (server: TLSRecorder, client: TLSRecorder) {
        let reactor = reactor!
        let serverLog = TLSRecorder(echoes: true), clientLog = TLSRecorder()
        let port = Mutex(0)
        reactor.execute {
            let listener = try? Listener(host: "127.0.0.1", port: 0, reactor: reactor) { socket in
                socket.delegate = serverLog
                try? socket.startTLS(server, plaintextAllowed: permissive)
            }
            port.withLock { $0 = listener?.port ?? -1 }
        }
        eventually("listening") { port.withLock { $0 != 0 } }
        let listening = port.withLock { $0 }
        reactor.execute {
            Connector.connect(host: "127.0.0.1", port: listening, timeout: .seconds(5), reactor: reactor) { result in
                guard case .success(let socket) = result else { return }
                socket.delegate = clientLog
                if let client { try? socket.startTLS(client, expectedPeer: expected, resuming: session) }
                socket.write(ByteBuffer(bytes: payload))
                socket.flush()
            }
        }
        return (serverLog, clientLog)
    }

    func testMutualTLSCarriesBytesBothWaysAndEachSideLearnsThePeersSPIFFEID() throws {
        let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 * 13) }
        let (server, client) = try connect(server: try context("db", server: true), client: try context("web", server: false),
                                           expected: Self.uri("db"), payload: payload)
        eventually("the payload is echoed back") { client.bytes.count == payload.count }
        XCTAssertEqual(server.bytes, payload, "records larger and smaller than a read arrive whole and in order")
        XCTAssertEqual(client.bytes, payload)
        XCTAssertEqual(server.identity, Self.uri("web"))
        XCTAssertEqual(client.identity, Self.uri("db"))
        XCTAssertTrue(server.tls)
    }

    func testAClientResumesTheSessionOfItsLastConnection() throws {
        let (server, client) = (try context("db", server: true), try context("web", server: false))
        let (_, first) = try connect(server: server, client: client, expected: Self.uri("db"), payload: Array("one".utf8))
        eventually("the first answer") { first.bytes.count == 3 }
        XCTAssertFalse(first.resumed)
        let session = try XCTUnwrap(first.session)
        let (resumedServer, second) = try connect(server: server, client: client, expected: Self.uri("db"), resuming: session,
                                                  payload: Array("two".utf8))
        eventually("the second answer") { second.bytes.count == 3 }
        XCTAssertTrue(second.resumed, "no full handshake the second time")
        XCTAssertTrue(resumedServer.resumed)
        XCTAssertEqual(resumedServer.identity, Self.uri("web"), "a resumed session keeps the client's identity")
    }

    func testAServerWithAnotherIdentityThanExpectedIsRefusedByTheClient() throws {
        let (server, client) = try connect(server: try context("db", server: true), client: try context("web", server: false),
                                           expected: Self.uri("payments"), payload: Array("GET / HTTP/1.1\r\n\r\n".utf8))
        eventually("both sides close") { client.closed && server.closed }
        XCTAssertEqual(server.bytes, [], "nothing reaches a server that is not the one meant")
        XCTAssertTrue(client.failure?.contains("certificate verify failed") == true, client.failure ?? "no reason")
    }

    func testAClientFromAnotherCAOrWithoutACertificateIsRefusedByTheServer() throws {
        let (server, client) = try connect(server: try context("db", server: true), client: try context("impostor", server: false, roots: "mesh"),
                                           expected: Self.uri("db"), payload: Array("hello".utf8))
        eventually("both sides close") { client.closed && server.closed }
        XCTAssertEqual(server.bytes, [])
        XCTAssertNotNil(server.failure)

        let (strict, plain) = try connect(server: try context("db", server: true), client: nil, expected: nil, payload: Array("GET / HTTP/1.1\r\n\r\n".utf8))
        eventually("a plaintext client of a strict server is closed") { plain.closed && strict.closed }
        XCTAssertEqual(strict.bytes, [])
    }

    func testAPermissiveServerTakesPlaintextAndTLSOnOnePort() throws {
        let (plainServer, plainClient) = try connect(server: try context("db", server: true), permissive: true, client: nil,
                                                     expected: nil, payload: Array("plain bytes".utf8))
        eventually("plaintext is echoed") { plainClient.bytes.count == 11 }
        XCTAssertFalse(plainServer.tls)
        XCTAssertNil(plainServer.identity)
        let (tlsServer, tlsClient) = try connect(server: try context("db", server: true), permissive: true,
                                                 client: try context("web", server: false), expected: Self.uri("db"),
                                                 payload: Array("secret bytes".utf8))
        eventually("TLS is echoed") { tlsClient.bytes.count == 12 }
        XCTAssertTrue(tlsServer.tls)
        XCTAssertEqual(tlsServer.identity, Self.uri("web"))
    }

    func testAContextRefusesAKeyThatIsNotTheCertificates() throws {
        XCTAssertThrowsError(try TLSContext(server: true, certificatePEM: String(contentsOfFile: "\(dir)/db.pem", encoding: .utf8),
                                            privateKeyPEM: String(contentsOfFile: "\(dir)/web.key", encoding: .utf8),
                                            rootsPEM: String(contentsOfFile: "\(dir)/mesh.pem", encoding: .utf8)))
        XCTAssertThrowsError(try TLSContext(server: true, certificatePEM: "junk", privateKeyPEM: "junk", rootsPEM: "junk"))
    }
}
