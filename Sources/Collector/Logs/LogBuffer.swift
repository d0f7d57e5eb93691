import Foundation
import Synchronization

/// A place in the buffer: the segment and the byte offset just after a record.
public struct BufferPosition: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var segment: UInt64
    public var offset: UInt64

    public init(segment: UInt64, offset: UInt64) {
        self.segment = segment
        self.offset = offset
    }

    public static func < (a: BufferPosition, b: BufferPosition) -> Bool {
        (a.segment, a.offset) < (b.segment, b.offset)
    }

    public var description: String { "\(segment) \(offset)" }
}

/// The collector's durable log: records appended to segment files and fsynced before they are
/// acknowledged (group commit: concurrent appends share one `fdatasync`), read back in order.
///
/// Record: 4-byte little-endian length, 4-byte CRC-32 of the payload, the payload. A torn record at
/// the end of the newest segment (power loss, `kill -9` mid-write) is cut off when the buffer opens.
public final class LogBuffer: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    private struct Pending {
        var payload: [UInt8]
        var continuation: CheckedContinuation<BufferPosition, any Error>
    }

    private struct State {
        /// Segment number → committed size, oldest first.
        var segments: [(number: UInt64, size: UInt64)]
        var pending: [Pending] = []
        var closed = false
    }

    public let directory: String
    private let segmentBytes: UInt64
    private let state: Mutex<State>
    private let wake = DispatchSemaphore(value: 0)
    private let writerDone = DispatchSemaphore(value: 0)

    public init(directory: String, segmentBytes: Int = 16 << 20) throws {
        self.directory = directory
        self.segmentBytes = UInt64(segmentBytes)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var segments = try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { $0.hasSuffix(".log") }
            .compactMap { UInt64($0.dropLast(4), radix: 16) }
            .sorted()
            .map { (number: $0, size: UInt64(0)) }
        for index in segments.indices {
            let path = Self.path(directory, segments[index].number)
            segments[index].size = index == segments.count - 1
                ? try Self.recover(path)
                : UInt64((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) ?? 0)
        }
        if segments.isEmpty { segments = [(1, 0)] }
        let active = segments.last!.number
        let fd = open(Self.path(directory, active), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Failure(description: "cannot open \(Self.path(directory, active)): \(String(cString: strerror(errno)))") }
        state = Mutex(State(segments: segments))
        let writer = Thread { [self] in writeLoop(fd: fd, segment: active) }
        writer.name = "log-buffer"
        writer.start()
    }

    static func path(_ directory: String, _ segment: UInt64) -> String {
        directory + "/" + String(format: "%016llx.log", segment)
    }

    /// Appends one record; returns once it is on disk, with the position just after it.
    public func append(_ payload: [UInt8]) async throws -> BufferPosition {
        try await withCheckedThrowingContinuation { continuation in
            let accepted = state.withLock { state in
                guard !state.closed else { return false }
                state.pending.append(Pending(payload: payload, continuation: continuation))
                return true
            }
            if accepted { wake.signal() } else { continuation.resume(throwing: Failure(description: "log buffer is closed")) }
        }
    }

    public func close() {
        let wasOpen = state.withLock { state in
            defer { state.closed = true }
            return !state.closed
        }
        guard wasOpen else { return }
        wake.signal()
        writerDone.wait()
    }

    /// The position after the last committed record.
    public var end: BufferPosition {
        state.withLock { BufferPosition(segment: $0.segments.last!.number, offset: $0.segments.last!.size) }
    }

    /// The oldest position still on disk.
    public var start: BufferPosition {
        state.withLock { BufferPosition(segment: $0.segments.first!.number, offset: 0) }
    }

    /// Bytes on disk, and of them the bytes from `position` on.
    public func sizes(after position: BufferPosition) -> (total: UInt64, after: UInt64) {
        state.withLock { state in
            var total: UInt64 = 0, after: UInt64 = 0
            for segment in state.segments {
                total += segment.size
                if segment.number > position.segment { after += segment.size }
                if segment.number == position.segment { after += segment.size - min(segment.size, position.offset) }
            }
            return (total, after)
        }
    }

    /// Records from `position` on, up to about `maxBytes`, each with the position just after it.
    public func read(from position: BufferPosition, maxBytes: Int) throws -> [(payload: [UInt8], end: BufferPosition)] {
        let segments = state.withLock { $0.segments }
        var records: [(payload: [UInt8], end: BufferPosition)] = []
        var budget = maxBytes
        for segment in segments where segment.number >= position.segment {
            let offset = segment.number == position.segment ? position.offset : 0
            guard offset < segment.size else { continue }
            let fd = open(Self.path(directory, segment.number), O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }  // removed by retention meanwhile
            defer { Foundation.close(fd) }
            var cursor = offset
            while cursor < segment.size && budget > 0 {
                var header = [UInt8](repeating: 0, count: 8)
                guard pread(fd, &header, 8, off_t(cursor)) == 8 else { break }
                let length = Int(Self.uint32(header, 0))
                guard cursor + 8 + UInt64(length) <= segment.size else {
                    throw Failure(description: "record at \(segment.number):\(cursor) runs past the committed end")
                }
                var payload = [UInt8](repeating: 0, count: length)
                guard length == 0 || pread(fd, &payload, length, off_t(cursor + 8)) == length else { break }
                cursor += 8 + UInt64(length)
                records.append((payload, BufferPosition(segment: segment.number, offset: cursor)))
                budget -= length + 8
            }
            if budget <= 0 { break }
        }
        return records
    }

    /// Deletes whole segments older than `segment` (never the newest one).
    public func removeSegments(before segment: UInt64) {
        let doomed = state.withLock { state -> [UInt64] in
            let doomed = state.segments.dropLast().filter { $0.number < segment }.map(\.number)
            state.segments.removeFirst(doomed.count)
            return doomed
        }
        for number in doomed { unlink(Self.path(directory, number)) }
    }

    /// Drops the oldest segments while the buffer holds more than `retentionBytes`, but never one
    /// that still has records after `shipped` (those wait for Loki, however long it takes).
    public func trim(shipped: BufferPosition, retentionBytes: UInt64) {
        let keepFrom = state.withLock { state -> UInt64 in
            var kept: UInt64 = 0
            var first = state.segments.last!.number
            for segment in state.segments.reversed() {
                kept += segment.size
                if kept > retentionBytes { break }
                first = segment.number
            }
            return first
        }
        removeSegments(before: min(keepFrom, shipped.segment))
    }

    /// Calls `body` with every record from `position` on, reading a few MiB at a time.
    public func scan(from position: BufferPosition, _ body: ([UInt8]) throws -> Void) throws {
        var cursor = position
        while true {
            let records = try read(from: cursor, maxBytes: 4 << 20)
            guard let last = records.last else { return }
            for record in records { try body(record.payload) }
            cursor = last.end
        }
    }

    // MARK: writing

    private func writeLoop(fd initialFD: Int32, segment initialSegment: UInt64) {
        var fd = initialFD
        var segment = initialSegment
        var size = state.withLock { $0.segments.last!.size }
        while true {
            wake.wait()
            let (batch, closed) = state.withLock { state in
                defer { state.pending = [] }
                return (state.pending, state.closed)
            }
            if !batch.isEmpty {
                var bytes: [UInt8] = []
                var ends: [BufferPosition] = []
                for item in batch {
                    Self.appendRecord(item.payload, to: &bytes)
                    ends.append(BufferPosition(segment: segment, offset: size + UInt64(bytes.count)))
                }
                if let error = Self.writeAll(fd, bytes) ?? (fdatasync(fd) == 0 ? nil : String(cString: strerror(errno))) {
                    // Nothing acknowledged; cut back whatever part of the batch reached the file.
                    ftruncate(fd, off_t(size))
                    for item in batch { item.continuation.resume(throwing: Failure(description: "writing the log buffer failed: \(error)")) }
                } else {
                    size += UInt64(bytes.count)
                    let committed = size
                    state.withLock { $0.segments[$0.segments.count - 1].size = committed }
                    // Rotate before acknowledging, so that an acknowledged writer sees the buffer as it stays.
                    if size >= segmentBytes, let next = rotate(from: fd, segment: segment) {
                        (fd, segment, size) = (next.fd, next.segment, 0)
                    }
                    for (item, end) in zip(batch, ends) { item.continuation.resume(returning: end) }
                }
            }
            if closed {
                for item in state.withLock({ state in defer { state.pending = [] }; return state.pending }) {
                    item.continuation.resume(throwing: Failure(description: "log buffer is closed"))
                }
                Foundation.close(fd)
                writerDone.signal()
                return
            }
        }
    }

    private func rotate(from fd: Int32, segment: UInt64) -> (fd: Int32, segment: UInt64)? {
        let next = segment + 1
        let newFD = open(Self.path(directory, next), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard newFD >= 0 else { return nil }
        let dirFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 { fsync(dirFD); Foundation.close(dirFD) }
        Foundation.close(fd)
        state.withLock { $0.segments.append((next, 0)) }
        return (newFD, next)
    }

    private static func appendRecord(_ payload: [UInt8], to bytes: inout [UInt8]) {
        let crc = payload.withUnsafeBytes { Compression.crc32($0) }
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: payload)
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> String? {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return String(cString: strerror(errno)) }
            offset += n
        }
        return nil
    }

    static func uint32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
    }

    /// Checks every record of the newest segment and cuts the file after the last whole one.
    private static func recover(_ path: String) throws -> UInt64 {
        guard let data = FileManager.default.contents(atPath: path) else { return 0 }
        let bytes = [UInt8](data)
        var offset = 0
        while offset + 8 <= bytes.count {
            let length = Int(uint32(bytes, offset))
            guard offset + 8 + length <= bytes.count else { break }
            let crc = bytes[(offset + 8)..<(offset + 8 + length)].withUnsafeBytes { Compression.crc32($0) }
            guard crc == uint32(bytes, offset + 4) else { break }
            offset += 8 + length
        }
        if offset < bytes.count { truncate(path, off_t(offset)) }
        return UInt64(offset)
    }
}

/// A saved buffer position (how far logs were shipped), replaced atomically.
public struct PositionFile: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public func load() -> BufferPosition? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let parts = text.split(whereSeparator: \.isWhitespace).compactMap { UInt64($0) }
        return parts.count == 2 ? BufferPosition(segment: parts[0], offset: parts[1]) : nil
    }

    public func save(_ position: BufferPosition) throws {
        try AtomicFile.write("\(position.segment) \(position.offset)\n", to: path)
    }
}

/// Write-to-temporary, fsync, rename: a crash leaves the old or the new content, never a mix.
enum AtomicFile {
    static func write(_ text: String, to path: String) throws {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw LogBuffer.Failure(description: "cannot write \(temporary): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        Foundation.close(fd)
        guard written == bytes.count, synced, rename(temporary, path) == 0 else {
            throw LogBuffer.Failure(description: "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
