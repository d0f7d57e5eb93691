import Foundation
import Synchronization

/// One process of the fleet, in its own process group (a Ctrl-C reaches `trellis up` only, which
/// then stops the fleet in order), with stdout and stderr appended to a log file.
final class ChildProcess: Sendable {
    let name: String
    private let process: Process
    private let exited = Mutex<Int32?>(nil)

    init(name: String, executable: String, arguments: [String], directory: String, logFile: String) throws {
        if !FileManager.default.fileExists(atPath: logFile) { _ = FileManager.default.createFile(atPath: logFile, contents: nil) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logFile))
        try log.seekToEnd()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        self.name = name
        self.process = process
        process.terminationHandler = { [weak self] process in
            self?.exited.withLock { $0 = process.terminationStatus }
            try? log.close()
        }
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { exited.withLock { $0 == nil } }

    /// SIGTERM, then SIGKILL if the process has not exited within `grace`.
    func stop(grace: Duration) async {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        guard isRunning else { return }
        // Its own children (a sidecar's service) would outlive it: they go first.
        for child in Self.children(of: pid) { kill(child, SIGKILL) }
        kill(pid, SIGKILL)
        while isRunning { try? await Task.sleep(for: .milliseconds(20)) }
    }

    /// Processes whose working directory is `directory` or below it.
    static func working(under directory: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry in
            guard let pid = Int32(entry), let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(entry)/cwd"),
                  cwd == directory || cwd.hasPrefix(directory + "/") else { return nil }
            return pid
        }
    }

    /// Processes whose parent is `pid`, from /proc/<pid>/task/*/children.
    static func children(of pid: Int32) -> [Int32] {
        let tasks = "/proc/\(pid)/task"
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: tasks)) ?? []
        return threads.flatMap { thread in
            ((try? String(contentsOfFile: "\(tasks)/\(thread)/children", encoding: .utf8)) ?? "")
                .split(separator: " ").compactMap { Int32($0) }
        }
    }
}
