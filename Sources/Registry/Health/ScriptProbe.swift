import Foundation
import NIOCore
import Synchronization
import TrellisCore

/// Script checks (`Args`, with `enable_script_checks`): runs the command without a shell and maps
/// its exit code as Consul does — 0 passing, 1 warning, anything else critical — keeping at most
/// `Probes.outputLimit` bytes of its combined stdout and stderr.
enum ScriptProbe {
    /// Consul's default timeout of a script check.
    static let defaultTimeout: Duration = .seconds(30)

    static func run(_ args: [String], timeout: Duration, on loop: any EventLoop) -> EventLoopFuture<ProbeResult> {
        let promise = loop.makePromise(of: ProbeResult.self)
        Thread.detachNewThread { promise.succeed(runBlocking(args, timeout: timeout)) }
        return promise.futureResult
    }

    private static func runBlocking(_ args: [String], timeout: Duration) -> ProbeResult {
        guard let command = args.first else { return ProbeResult(status: .critical, output: "script check has no command") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command.contains("/") ? command : "/usr/bin/env")
        process.arguments = command.contains("/") ? Array(args.dropFirst()) : args
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch {
            return ProbeResult(status: .critical, output: "Failed to invoke: \(error.localizedDescription)")
        }
        let timedOut = Mutex(false)
        let killer = DispatchWorkItem {
            guard process.isRunning else { return }
            timedOut.withLock { $0 = true }
            kill(process.processIdentifier, SIGKILL)
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(timeout.nanoseconds)), execute: killer)
        var kept: [UInt8] = []
        var total = 0
        let reader = pipe.fileHandleForReading
        while true {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            total += chunk.count
            kept += chunk.prefix(max(0, Probes.outputLimit - kept.count))
        }
        process.waitUntilExit()
        killer.cancel()
        if timedOut.withLock({ $0 }) {
            return ProbeResult(status: .critical, output: "Timed out (\(GoDuration.format(timeout))) running check")
        }
        let output = Probes.captured(kept, of: total)
        switch (process.terminationReason, process.terminationStatus) {
        case (.exit, 0): return ProbeResult(status: .passing, output: output)
        case (.exit, 1): return ProbeResult(status: .warning, output: output)
        default: return ProbeResult(status: .critical, output: output)
        }
    }
}
