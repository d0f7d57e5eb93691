import Foundation
import Logging
import Telemetry
import TrellisCore

/// A file to follow and the labels of its lines (plus `filename`).
public struct FileSource: Sendable {
    public var path: String
    public var labels: [Label]

    public init(path: String, labels: [Label]) {
        self.path = path
        self.labels = labels
    }
}

/// Follows files like Promtail: reads new complete lines, notices rotation (a new inode at the
/// path: the old file is read to its end first) and truncation (size below the position), and
/// keeps its positions in a file so that a restart resumes where the last acknowledged line ended.
public final class FileTailer: Sendable {
    private struct Followed {
        var fd: Int32 = -1
        var inode: UInt64 = 0
        var offset: UInt64 = 0
    }

    let sources: [FileSource]
    let positionsPath: String
    let ingest: LogIngest
    let logger: Logger
    let pollInterval: Duration

    public init(sources: [FileSource], positionsPath: String, ingest: LogIngest, logger: Logger, pollInterval: Duration = .milliseconds(250)) {
        self.sources = sources
        self.positionsPath = positionsPath
        self.ingest = ingest
        self.logger = logger
        self.pollInterval = pollInterval
    }

    public func run() async {
        var followed = loadPositions()
        defer { for state in followed.values where state.fd >= 0 { close(state.fd) } }
        while !Task.isCancelled {
            var moved = false
            for source in sources {
                var state = followed[source.path] ?? Followed()
                let before = (state.inode, state.offset)
                await poll(source, &state)
                followed[source.path] = state
                moved = moved || before != (state.inode, state.offset)
            }
            if moved { savePositions(followed) }
            try? await Task.sleep(for: pollInterval)
        }
    }

    private func poll(_ source: FileSource, _ state: inout Followed) async {
        var info = stat()
        let exists = stat(source.path, &info) == 0
        if state.fd >= 0, exists, UInt64(info.st_ino) != state.inode {
            await readLines(source, &state)  // rotated: finish the old file first
            close(state.fd)
            state = Followed(fd: -1, inode: 0, offset: 0)
        }
        if state.fd < 0 {
            guard exists else { return }
            let fd = open(source.path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return }
            let resumed = state.inode == UInt64(info.st_ino)
            state = Followed(fd: fd, inode: UInt64(info.st_ino), offset: resumed ? state.offset : 0)
        }
        var current = stat()
        guard fstat(state.fd, &current) == 0 else { return }
        if UInt64(current.st_size) < state.offset {
            logger.info("file truncated; reading from the start", metadata: ["path": "\(source.path)"])
            state.offset = 0
        }
        if UInt64(current.st_size) > state.offset { await readLines(source, &state) }
    }

    /// Ingests the complete lines after `state.offset`; the position moves only once they are stored.
    private func readLines(_ source: FileSource, _ state: inout Followed) async {
        while true {
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            let count = pread(state.fd, &chunk, chunk.count, off_t(state.offset))
            guard count > 0, let lastNewline = chunk[..<count].lastIndex(of: 0x0A) else { return }
            let now = Int64(Date().timeIntervalSince1970 * 1e9)
            let entries = chunk[...lastNewline].split(separator: 0x0A, omittingEmptySubsequences: false).dropLast()
                .map { line in LogEntry(timestampNs: now, line: String(decoding: line.last == 0x0D ? line.dropLast() : line, as: UTF8.self)) }
                .filter { !$0.line.isEmpty }
            let stream = LogStream(labels: source.labels + [Label("filename", source.path)], entries: entries)
            let outcome = await ingest.ingest(entries.isEmpty ? [] : [stream], tenant: "fake", source: "file")
            guard outcome.status != 500, outcome.status != 429 else {
                logger.warning("file lines not stored; will retry", metadata: ["path": "\(source.path)", "reason": "\(outcome.message)"])
                return
            }
            state.offset += UInt64(lastNewline + 1)
            if count < chunk.count { return }
        }
    }

    private func loadPositions() -> [String: Followed] {
        guard let data = FileManager.default.contents(atPath: positionsPath), let json = try? JSON.parse([UInt8](data)),
              let object = json.objectValue else { return [:] }
        var followed: [String: Followed] = [:]
        for (path, value) in object.pairs {
            guard let inode = value["inode"]?.intValue, let offset = value["offset"]?.intValue else { continue }
            followed[path] = Followed(fd: -1, inode: UInt64(inode), offset: UInt64(offset))
        }
        return followed
    }

    private func savePositions(_ followed: [String: Followed]) {
        let json = JSON.object(JSONObject(followed.sorted { $0.key < $1.key }.map { path, state in
            (path, .object(JSONObject([("inode", .int(Int64(state.inode))), ("offset", .int(Int64(state.offset)))])))
        }))
        do { try AtomicFile.write(json.text, to: positionsPath) } catch {
            logger.error("cannot save file positions", metadata: ["error": "\(error)"])
        }
    }
}
