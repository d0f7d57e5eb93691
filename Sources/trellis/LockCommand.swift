import ArgumentParser
import ConsulClient
import Foundation
import TrellisCore
import TrellisHTTP

/// `trellis lock <prefix> -- command`: runs the command while holding a session lock on `<prefix>/.lock`.
struct LockCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lock",
        abstract: "Run a command while holding a KV lock (a session on <prefix>/.lock), like `consul lock`.")

    @OptionGroup var options: RegistryOption
    @Argument(help: "KV prefix of the lock.") var prefix: String
    @Argument(parsing: .postTerminator, help: "The command to run once the lock is held.") var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else { throw ValidationError("give the command after --: trellis lock PREFIX -- COMMAND") }
    }

    func run() async throws {
        let client = try options.client()
        let key = "/v1/kv/\(URLPath.escape(prefix, keepingSlashes: true))/.lock"
        let sessionBody = #"{"Name":"trellis lock \#(prefix)","TTL":"15s","Behavior":"release"}"#
        let (created, _) = try await CLI.call { try await client.json("PUT", "/v1/session/create", body: Array(sessionBody.utf8)) }
        guard let session = created["ID"]?.stringValue else { CLI.fail("error: the registry returned no session ID") }
        let holder = Array(#"{"Pid":\#(ProcessInfo.processInfo.processIdentifier)}"#.utf8)

        var index: UInt64 = 0
        while true {
            let (acquired, _) = try await CLI.call { try await client.json("PUT", key + "?acquire=\(session)", body: holder) }
            if acquired == .bool(true) { break }
            // Held by someone else: wait for the key to change, then try again.
            let (_, headers, _) = try await CLI.call { try await client.send("GET", key + "?index=\(index)&wait=30s", timeout: 60) }
            index = headers["x-consul-index"].flatMap(UInt64.init) ?? 0
        }

        let renewal = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(5))
                _ = try? await client.send("PUT", "/v1/session/renew/\(session)")
            }
        }
        let status = try runChild()
        renewal.cancel()
        _ = try? await client.send("PUT", key + "?release=\(session)")
        _ = try? await client.send("PUT", "/v1/session/destroy/\(session)")
        throw ExitCode(status)
    }

    /// Runs the command with inherited stdio, forwarding SIGTERM/SIGINT, and returns its exit status.
    private func runChild() throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        try process.run()
        let forwarders = [SIGTERM, SIGINT].map { signalNumber -> any DispatchSourceSignal in
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber)
            source.setEventHandler { kill(process.processIdentifier, signalNumber) }
            source.resume()
            return source
        }
        process.waitUntilExit()
        forwarders.forEach { $0.cancel() }
        return process.terminationStatus
    }
}
