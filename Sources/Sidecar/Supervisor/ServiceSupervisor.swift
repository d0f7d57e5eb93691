import Foundation
import Logging
import Synchronization
import TrellisCore

/// Runs the service process: starts it with the sidecar's environment plus `PORT` and the upstream
/// URLs, turns each line it prints into a log entry, restarts it with exponential backoff when it
/// exits, and stops it (SIGTERM, then SIGKILL after a grace period) on shutdown.
public final class ServiceSupervisor: Sendable {
    private struct State {
        var process: Process?
        var stopping = false
        var running = false
    }

    private let command: [String]
    private let environment: [String: String]
    private let output: ServiceOutput
    private let logger: Logger
    private let metrics: SidecarMetrics
    private let state = Mutex(State())

    init(command: [String], environment: [String: String], output: ServiceOutput, logger: Logger, metrics: SidecarMetrics) {
        self.command = command
        self.environment = environment
        self.output = output
        self.logger = logger
        self.metrics = metrics
    }

    public var isRunning: Bool { state.withLock { $0.running } }

    /// Keeps the service running until `stop` is called.
    func run() async {
        var failures = 0
        while !state.withLock({ $0.stopping }) {
            let started = ContinuousClock.now
            do {
                let status = try await runOnce()
                if state.withLock({ $0.stopping }) { return }
                logger.warning("service exited, restarting", metadata: ["status": "\(status)", "command": "\(command[0])"])
            } catch {
                logger.error("service could not start", metadata: ["command": "\(command.joined(separator: " "))", "error": "\(error)"])
            }
            // A run that lasted a while resets the backoff: the crash is not a crash loop.
            failures = ContinuousClock.now - started > .seconds(10) ? 1 : failures + 1
            metrics.serviceRestarts.increment()
            let delay = min(10_000, 100 * (1 << min(failures - 1, 7)))
            try? await Task.sleep(for: .milliseconds(delay))
        }
    }

    private func runOnce() async throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try ExecutableLookup.resolve(command[0], path: environment["PATH"]))
        process.arguments = Array(command.dropFirst())
        process.environment = environment
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        return try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { [self] process in
                state.withLock {
                    $0.running = false
                    $0.process = nil
                }
                metrics.serviceUp.record(0.0)
                continuation.resume(returning: process.terminationStatus)
            }
            do {
                try state.withLock { state in
                    guard !state.stopping else { throw CancellationError() }
                    try process.run()
                    state.process = process
                    state.running = true
                }
            } catch {
                continuation.resume(throwing: error)
                return
            }
            metrics.serviceUp.record(1.0)
            logger.info("service started", metadata: ["pid": "\(process.processIdentifier)", "command": "\(command.joined(separator: " "))"])
            output.capture(stdout.fileHandleForReading, stream: "stdout")
            output.capture(stderr.fileHandleForReading, stream: "stderr")
        }
    }

    /// Stops the service and waits for it to exit: SIGTERM, then SIGKILL after `grace`.
    func stop(grace: Duration) async {
        let process = state.withLock { state -> Process? in
            state.stopping = true
            return state.process
        }
        guard let process, process.isRunning else { return }
        process.terminate()
        let deadline = ContinuousClock.now + grace
        while process.isRunning && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        while process.isRunning { try? await Task.sleep(for: .milliseconds(10)) }
    }
}

/// Turns the service's output into log entries on the sidecar's stdout: a JSON line from the
/// service keeps its fields and gains `service`, `instance` and `stream`; any other line becomes `msg`.
final class ServiceOutput: Sendable {
    private let service: String
    private let instance: String
    private let sink: OutputSink

    init(service: String, instance: String, sink: OutputSink) {
        self.service = service
        self.instance = instance
        self.sink = sink
    }

    func capture(_ handle: FileHandle, stream: String) {
        let thread = Thread { [self] in
            var pending = [UInt8]()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending.append(contentsOf: chunk)
                while let newline = pending.firstIndex(of: 0x0A) {
                    emit(Array(pending[..<newline]), stream: stream)
                    pending.removeSubrange(...newline)
                }
            }
            if !pending.isEmpty { emit(pending, stream: stream) }
            try? handle.close()
        }
        thread.name = "service-\(stream)"
        thread.start()
    }

    func emit(_ line: [UInt8], stream: String) {
        var text = line
        if text.last == 0x0D { text.removeLast() }
        guard !text.isEmpty else { return }
        sink.write(ServiceOutput.entry(text, stream: stream, service: service, instance: instance))
    }

    static func entry(_ line: [UInt8], stream: String, service: String, instance: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(line.count + 128)
        let added = [("service", service), ("instance", instance), ("stream", stream)]
        if line.first == UInt8(ascii: "{"), line.last == UInt8(ascii: "}"), let object = (try? JSON.parse(line))?.objectValue {
            // A key the service wrote itself is kept once, with the service's value.
            let extra = added.filter { object[exact: $0.0] == nil }.map { "\"\($0.0)\":\"\($0.1)\"" }.joined(separator: ",")
            out.append(contentsOf: line.dropLast())
            out.append(contentsOf: (line.count > 2 && !extra.isEmpty ? "," : "").utf8)
            out.append(contentsOf: extra.utf8)
            out.append(contentsOf: "}\n".utf8)
        } else {
            let extra = added.map { "\"\($0.0)\":\"\($0.1)\"" }.joined(separator: ",")
            let level = stream == "stderr" ? "error" : "info"
            out.append(contentsOf: "{\"ts\":\"\(Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(Date()))\",\"level\":\"\(level)\",".utf8)
            out.append(contentsOf: extra.utf8)
            out.append(contentsOf: ",\"msg\":".utf8)
            JSON.writeString(String(decoding: line, as: UTF8.self), into: &out)
            out.append(contentsOf: "}\n".utf8)
        }
        return out
    }
}

/// The sidecar's stdout, shared by access log and service output so that lines never interleave;
/// every line also goes to the collector through the forwarder.
final class OutputSink: Sendable {
    private let lock = Mutex(())
    private let forwarder: LogForwarder?

    init(forwarder: LogForwarder?) { self.forwarder = forwarder }

    func write(_ bytes: [UInt8]) {
        forwarder?.enqueue(bytes)
        lock.withLock { _ in
            bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = Foundation.write(1, raw.baseAddress! + offset, raw.count - offset)
                    if n <= 0 { break }
                    offset += n
                }
            }
        }
    }
}
