import CEventIO
@testable import EventIO
import Glibc
import XCTest

/// The plain transport on a real socket pair: what each system-call outcome becomes.
final class PlainTransportTests: XCTestCase {
    private var fds: [Int32] = [-1, -1]

    override func setUpWithError() throws {
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds), 0)
    }

    override func tearDown() {
        for fd in fds where fd >= 0 { Glibc.close(fd) }
    }

    private func read(_ transport: PlainTransport, capacity: Int = 64) -> (TransferResult, [UInt8]) {
        var bytes = [UInt8](repeating: 0, count: capacity)
        let result = bytes.withUnsafeMutableBytes { transport.read(into: $0) }
        if case .transferred(let count) = result { return (result, Array(bytes.prefix(count))) }
        return (result, [])
    }

    private func write(_ transport: PlainTransport, _ parts: [[UInt8]]) -> TransferResult {
        let iovecs = UnsafeMutablePointer<iovec>.allocate(capacity: parts.count)
        defer { iovecs.deallocate() }
        let buffers = parts.map { part in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: part.count, alignment: 1)
            buffer.copyBytes(from: part)
            return buffer
        }
        defer { buffers.forEach { $0.deallocate() } }
        for (index, buffer) in buffers.enumerated() { iovecs[index] = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count) }
        return transport.write(iovecs, count: parts.count)
    }

    func testBytesWrittenInOneOrSeveralBuffersArriveInOrder() {
        let (a, b) = (PlainTransport(fd: fds[0]), PlainTransport(fd: fds[1]))
        guard case .transferred(5) = write(a, [Array("hello".utf8)]) else { return XCTFail("one buffer") }
        guard case .transferred(6) = write(a, [Array(" ".utf8), Array("world".utf8)]) else { return XCTFail("two buffers") }
        let (result, bytes) = read(b)
        guard case .transferred(11) = result else { return XCTFail("\(result)") }
        XCTAssertEqual(String(decoding: bytes, as: UTF8.self), "hello world")
    }

    func testAnEmptySocketWouldBlockAndAClosedPeerEndsTheStream() {
        let b = PlainTransport(fd: fds[1])
        guard case .wouldBlock = read(b).0 else { return XCTFail("nothing to read yet") }
        Glibc.close(fds[0])
        fds[0] = -1
        guard case .closed = read(b).0 else { return XCTFail("the peer closed") }
    }

    func testAFullSocketWouldBlockAndAClosedDescriptorFails() {
        let a = PlainTransport(fd: fds[0])
        let chunk = [UInt8](repeating: 0x61, count: 65_536)
        var blocked = false
        for _ in 0..<1_000 {
            if case .wouldBlock = write(a, [chunk]) {
                blocked = true
                break
            }
        }
        XCTAssertTrue(blocked, "a peer that does not read fills the socket's buffer")
        Glibc.close(fds[0])
        let closed = PlainTransport(fd: fds[0])
        fds[0] = -1
        guard case .failed(EBADF) = read(closed).0 else { return XCTFail("a closed descriptor") }
    }
}
