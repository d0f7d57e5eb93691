import ArgumentParser
import ConsulClient
import Foundation
import Policy
import Sidecar
import TrellisCore
import TrellisHTTP

struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Validate, store and read sidecar policies (registry KV trellis/policies/<service>).",
        subcommands: [PolicyApply.self, PolicyValidate.self, PolicyGet.self])
}

/// Reads and validates a policy file, exiting with the offending field on error.
private func loadPolicy(_ file: String) -> (text: String, policy: SidecarPolicy) {
    do { return try PolicyParser.read(file: file) } catch { CLI.fail("error: \(error)") }
}

struct PolicyValidate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "validate", abstract: "Check a policy file without storing it.")
    @Argument(help: "Policy YAML file.") var file: String

    func run() async throws {
        _ = loadPolicy(file)
        print("\(file): valid")
    }
}

struct PolicyApply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply", abstract: "Validate a policy file and store it; the service's sidecars apply it within a second.")
    @OptionGroup var options: RegistryOption
    @Argument(help: "Policy YAML file (its `service:` field names the service).") var file: String
    @Option(name: .long, help: "Service the policy is for (default: the file's `service:` field).") var service: String?

    func run() async throws {
        let (text, policy) = loadPolicy(file)
        guard let target = service ?? policy.service, !target.isEmpty else {
            CLI.fail("error: \(file): say which service the policy is for (`service:` in the file or --service)")
        }
        let client = try options.client()
        let (status, _, body) = try await CLI.call {
            try await client.send("PUT", SidecarPolicy.kvPath(for: target), body: Array(text.utf8))
        }
        try CLI.check(status, body)
        print("policy for \(target) stored at \(SidecarPolicy.key(for: target))")
    }
}

struct PolicyGet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Print the policy stored for a service.")
    @OptionGroup var options: RegistryOption
    @Argument(help: "Service name.") var service: String

    func run() async throws {
        let client = try options.client()
        let (status, _, body) = try await CLI.call { try await client.send("GET", SidecarPolicy.kvPath(for: service) + "?raw") }
        if status == 404 { CLI.fail("no policy stored for \(service) (sidecars use their --policy file or the defaults)") }
        try CLI.check(status, body)
        FileHandle.standardOutput.write(Data(body))
    }
}
