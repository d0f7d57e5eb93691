import CEventIO
import EventIO
import Foundation
import Glibc
import NIOCore
import Synchronization
import XCTest

/// Collects what a socket's delegate is told, on the reactor's thread, for the test to read.
private final class Recorder: StreamSocketDelegate, @unchecked Sendable {
    private let state = Mutex<(bytes: [UInt8], reads: Int, closed: Bool, writability: [Bool])>(([], 0, false, []))

    func socketRead(_ socket: StreamSocket, _ bytes: ByteBuffer) {
        state.withLock {
            $0.bytes += bytes.readableBytesView
            $0.reads += 1
        }
    }
    func socketReadComplete(_ socket: StreamSocket) {}
    func socketWritabilityChanged(_ socket: StreamSocket) { state.withLock { $0.writability.append(socket.isWritable) } }
    func socketClosed(_ socket: StreamSocket) { state.withLock { $0.closed = true } }

    var bytes: [UInt8] { state.withLock { $0.bytes } }
    var reads: Int { state.withLock { $0.reads } }
    var closed: Bool { state.withLock { $0.closed } }
    var writability: [Bool] { state.withLock { $0.writability } }
}

final class ReactorTests: XCTestCase {
    private var reactor: Reactor!

    override func setUpWithError() throws {
        reactor = try Reactor()
        reactor.start(name: "test-reactor")
    }

    override func tearDown() {
        reactor.stop()
    }

    /// Waits until `condition` holds, checking every 10 ms for up to 10 s.
    private func eventually(_ message: String, _ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(10)
        while !condition() {
            if Date() > deadline { return XCTFail("timed out: \(message)") }
            usleep(10_000)
        }
    }

    /// A connected pair: the accepted side and the connecting side, each with a recorder.
    private func connectedPair() async throws -> (server: ReactorBound<StreamSocket>, serverLog: Recorder,
                                                   client: ReactorBound<StreamSocket>, clientLog: Recorder) {
        let reactor = reactor!
        let serverLog = Recorder(), clientLog = Recorder()
        let accepted = Mutex<ReactorBound<StreamSocket>?>(nil)
        let port = try await reactor.submit { () -> Result<Int, SocketError> in
            Result {
                try Listener(host: "127.0.0.1", port: 0, reactor: reactor) { socket in
                    socket.delegate = serverLog
                    accepted.withLock { $0 = ReactorBound(socket, on: reactor) }
                }.port
            }.mapError { $0 as! SocketError }
        }.get()
        let connected = Mutex<Result<ReactorBound<StreamSocket>, SocketError>?>(nil)
        reactor.execute {
            Connector.connect(host: "127.0.0.1", port: port, timeout: .seconds(5), reactor: reactor) { result in
                if case .success(let socket) = result { socket.delegate = clientLog }
                connected.withLock { $0 = result.map { ReactorBound($0, on: reactor) } }
            }
        }
        eventually("connected and accepted") { connected.withLock { $0 != nil } && accepted.withLock { $0 != nil } }
        let client = try XCTUnwrap(connected.withLock { $0 }).get()
        return (try XCTUnwrap(accepted.withLock { $0 }), serverLog, client, clientLog)
    }

    func testBytesWrittenArriveInOrderAndCloseAfterFlushDeliversThemAll() async throws {
        let pair = try await connectedPair()
        let payload = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        await reactor.submit {
            let socket = pair.client.value
            // Several buffers: written with one writev, the rest when the peer drains.
            for start in stride(from: 0, to: payload.count, by: 50_000) {
                socket.write(ByteBuffer(bytes: payload[start..<min(start + 50_000, payload.count)]))
            }
            socket.closeAfterFlush()
        }
        eventually("all bytes arrive and the close is seen") { pair.serverLog.bytes.count == payload.count && pair.serverLog.closed }
        XCTAssertEqual(pair.serverLog.bytes, payload)
        XCTAssertTrue(pair.clientLog.closed, "the closing side is told too")
    }

    func testAPausedSocketDeliversNothingUntilResumed() async throws {
        let pair = try await connectedPair()
        await reactor.submit { pair.server.value.pauseReading() }
        await reactor.submit {
            pair.client.value.write(ByteBuffer(string: "hello"))
            pair.client.value.flush()
        }
        usleep(200_000)
        XCTAssertEqual(pair.serverLog.reads, 0)
        await reactor.submit { pair.server.value.resumeReading() }
        eventually("bytes arrive after resuming") { pair.serverLog.bytes == Array("hello".utf8) }
    }

    func testBytesAndTheEndThatArriveWhilePausedAreDeliveredOnResume() async throws {
        let pair = try await connectedPair()
        await reactor.submit { pair.server.value.pauseReading() }
        await reactor.submit {
            pair.client.value.write(ByteBuffer(string: "last words"))
            pair.client.value.closeAfterFlush()
        }
        eventually("the client side closed") { pair.clientLog.closed }
        usleep(100_000)
        XCTAssertEqual(pair.serverLog.reads, 0)
        XCTAssertFalse(pair.serverLog.closed)
        await reactor.submit { pair.server.value.resumeReading() }
        eventually("bytes, then the close") { pair.serverLog.closed }
        XCTAssertEqual(pair.serverLog.bytes, Array("last words".utf8))
    }

    func testWritabilityFollowsTheQueueAboveTheHighMarkAndBelowTheLowMark() async throws {
        let pair = try await connectedPair()
        await reactor.submit { pair.server.value.pauseReading() }
        let chunk = ByteBuffer(repeating: 0x61, count: 256 * 1024)
        let writable = await reactor.submit { () -> Bool in
            // More than the kernel's buffers take while the peer does not read.
            for _ in 0..<64 { pair.client.value.write(chunk) }
            pair.client.value.flush()
            return pair.client.value.isWritable
        }
        XCTAssertFalse(writable)
        XCTAssertEqual(pair.clientLog.writability, [false])
        await reactor.submit { pair.server.value.resumeReading() }
        eventually("everything arrives") { pair.serverLog.bytes.count == 64 * 256 * 1024 }
        eventually("writable again") { pair.clientLog.writability == [false, true] }
    }

    func testAPeerThatClosesClosesTheSocket() async throws {
        let pair = try await connectedPair()
        await reactor.submit { pair.client.value.close() }
        eventually("the other side sees the close") { pair.serverLog.closed }
        let open = await reactor.submit { pair.server.value.isOpen }
        XCTAssertFalse(open)
    }

    func testConnectingToAClosedPortFailsWithTheReason() {
        let reactor = reactor!
        // Bound but not listening: connecting is refused.
        let (fd, port) = Self.boundSocket()
        defer { close(fd) }
        let outcome = Mutex<String?>(nil)
        reactor.execute {
            Connector.connect(host: "127.0.0.1", port: port, timeout: .seconds(5), reactor: reactor) { result in
                outcome.withLock { $0 = (try? result.get()).map { _ in "connected" } ?? "\(result)" }
            }
        }
        eventually("the connect fails") { outcome.withLock { $0 } != nil }
        XCTAssertEqual(outcome.withLock { $0 }, "failure(connection refused)")
    }

    func testAConnectThatGetsNoAnswerTimesOut() {
        // A listener whose backlog is full and that never accepts: further SYNs get no answer.
        let (fd, port) = Self.boundSocket()
        defer { close(fd) }
        listen(fd, 0)

        let reactor = reactor!
        let outcomes = Mutex<[String]>([])
        reactor.execute {
            for _ in 0..<4 {
                Connector.connect(host: "127.0.0.1", port: port, timeout: .milliseconds(300), reactor: reactor) { result in
                    outcomes.withLock { $0.append((try? result.get()).map { _ in "connected" } ?? "\(result)") }
                }
            }
        }
        eventually("every connect ends") { outcomes.withLock { $0.count } == 4 }
        XCTAssertTrue(outcomes.withLock { $0 }.contains("failure(timed out after 300 ms)"), "\(outcomes.withLock { $0 })")
    }

    func testWorkHandedOverRunsOnTheReactorAndTimersFireInOrder() async {
        let reactor = reactor!
        let onReactor = await reactor.submit { reactor.isCurrent }
        XCTAssertTrue(onReactor)
        XCTAssertFalse(reactor.isCurrent)
        let fired = Mutex<[Int]>([])
        reactor.execute {
            reactor.schedule(in: .milliseconds(60)) { fired.withLock { $0.append(3) } }
            reactor.schedule(in: .milliseconds(20)) { fired.withLock { $0.append(1) } }
            reactor.schedule(in: .milliseconds(40)) { fired.withLock { $0.append(2) } }.cancel()
            reactor.schedule(in: .milliseconds(30)) {
                reactor.schedule(in: .milliseconds(10)) { fired.withLock { $0.append(2) } }
            }
        }
        eventually("all timers fired") { fired.withLock { $0.count } == 3 }
        XCTAssertEqual(fired.withLock { $0 }, [1, 2, 3])
    }

    func testAManuallyClockedReactorFiresTimersOnlyWhenTimeMoves() throws {
        let manual = try Reactor.manuallyClocked()
        var fired: [String] = []
        manual.schedule(in: .seconds(2)) { fired.append("b") }
        manual.schedule(in: .seconds(1)) { fired.append("a") }
        let repeating = manual.scheduleRepeating(every: .seconds(1)) { fired.append("r") }
        manual.advanceTime(by: .milliseconds(999))
        XCTAssertEqual(fired, [])
        manual.advanceTime(by: .milliseconds(1))
        XCTAssertEqual(fired.sorted(), ["a", "r"])
        manual.advanceTime(by: .seconds(1))
        XCTAssertEqual(fired.sorted(), ["a", "b", "r", "r"])
        repeating.cancel()
        manual.advanceTime(by: .seconds(5))
        XCTAssertEqual(fired.count, 4)
    }

    /// A TCP socket bound to a free loopback port, not listening.
    private static func boundSocket() -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }
}
