import ArgumentParser
import ConsulClient
import Foundation
import TrellisCore
import TrellisHTTP

struct IntentionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "intention", abstract: "Say which service may call which (Consul's intentions; `*` is any service).",
        subcommands: [IntentionCreate.self, IntentionDelete.self, IntentionList.self, IntentionCheck.self])
}

/// The two services an intention is about: `SRC DST`.
struct IntentionPair: ParsableArguments {
    @Argument(help: "Source service (or *).") var source: String
    @Argument(help: "Destination service (or *).") var destination: String

    /// The `source`/`destination` query of `/v1/connect/intentions/exact` and `/check`.
    var query: String {
        "source=\(URLPath.escapeQueryValue(source))&destination=\(URLPath.escapeQueryValue(destination))"
    }
}

struct IntentionCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Allow (or with --deny, deny) connections from SRC to DST; sidecars apply it within a second.")
    @OptionGroup var options: RegistryOption
    @Flag(name: .long, help: "Deny instead of allow.") var deny = false
    @Flag(name: .long, help: "Replace an intention of the same source and destination.") var replace = false
    @Option(name: .long, help: "A description kept with the intention.") var description: String?
    @OptionGroup var pair: IntentionPair

    func run() async throws {
        let client = try options.client()
        let (source, destination) = (pair.source, pair.destination)
        let path = "/v1/connect/intentions/exact?" + pair.query
        if !replace {
            let (status, _, body) = try await CLI.call { try await client.send("GET", path) }
            if status == 200 {
                CLI.fail("error: an intention from \(source) to \(destination) exists already; use --replace to replace it")
            }
            if status != 404 { try CLI.check(status, body) }
        }
        let action = deny ? "deny" : "allow"
        var fields: [(String, JSON)] = [("SourceType", .string("consul")), ("Action", .string(action))]
        if let description { fields.append(("Description", .string(description))) }
        let (status, _, body) = try await CLI.call {
            try await client.send("PUT", path, body: JSON.object(JSONObject(fields)).serialized())
        }
        try CLI.check(status, body)
        print("Created: \(source) => \(destination) (\(action))")
    }
}

struct IntentionDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete the intention from SRC to DST.")
    @OptionGroup var options: RegistryOption
    @OptionGroup var pair: IntentionPair

    func run() async throws {
        let client = try options.client()
        let (status, _, body) = try await CLI.call { try await client.send("DELETE", "/v1/connect/intentions/exact?" + pair.query) }
        try CLI.check(status, body)
        print("Intention deleted.")
    }
}

struct IntentionList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List intentions in evaluation order.")
    @OptionGroup var options: RegistryOption

    func run() async throws {
        let client = try options.client()
        let (status, _, body) = try await CLI.call { try await client.send("GET", "/v1/connect/intentions") }
        try CLI.check(status, body)
        let intentions = (try? JSON.parse(body).arrayValue) ?? []
        CLI.printTable([["SOURCE", "ACTION", "DESTINATION", "PRECEDENCE", "DESCRIPTION"]] + intentions.map { intention in
            [intention["SourceName"]?.stringValue ?? "", intention["Action"]?.stringValue ?? "",
             intention["DestinationName"]?.stringValue ?? "", intention["Precedence"]?.intValue.map { String($0) } ?? "",
             intention["Description"]?.stringValue ?? ""]
        })
    }
}

struct IntentionCheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Whether SRC may connect to DST: prints Allowed (exit 0) or Denied (exit 2), as Consul's CLI.")
    @OptionGroup var options: RegistryOption
    @OptionGroup var pair: IntentionPair

    func run() async throws {
        let client = try options.client()
        let (status, _, body) = try await CLI.call { try await client.send("GET", "/v1/connect/intentions/check?" + pair.query) }
        try CLI.check(status, body)
        guard let allowed = (try? JSON.parse(body))?["Allowed"]?.boolValue else { CLI.fail("error: unexpected answer: \(body)") }
        print(allowed ? "Allowed" : "Denied")
        if !allowed { throw ExitCode(2) }
    }
}
