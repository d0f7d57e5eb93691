import ArgumentParser
import ConsulClient
import Foundation
import TrellisCore
import TrellisHTTP

struct ACLCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acl", abstract: "Tokens and policies of a registry that runs with ACLs (Consul's ACL API).",
        subcommands: [ACLBootstrap.self, ACLTokenCommand.self, ACLPolicyCommand.self])
}

/// Runs one ACL API call and prints its JSON answer (`--format json`) or a summary.
private func aclCall(_ options: RegistryOption, _ method: String, _ path: String, body: JSON? = nil) async throws -> JSON {
    let client = try options.client()
    let (status, _, answer) = try await CLI.call { try await client.send(method, path, body: body?.serialized()) }
    try CLI.check(status, answer)
    return (try? JSON.parse(answer)) ?? .null
}

struct ACLBootstrap: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bootstrap", abstract: "Create the first management token (once per cluster); prints its secret.")
    @OptionGroup var options: RegistryOption

    func run() async throws {
        let token = try await aclCall(options, "PUT", "/v1/acl/bootstrap")
        print("AccessorID: \(token["AccessorID"]?.stringValue ?? "")")
        print("SecretID:   \(token["SecretID"]?.stringValue ?? "")")
    }
}

struct ACLTokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Create, list, read and delete tokens.",
        subcommands: [ACLTokenCreate.self, ACLTokenList.self, ACLTokenRead.self, ACLTokenDelete.self])
}

struct ACLTokenCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a token with policies and service identities; prints its secret.")
    @OptionGroup var options: RegistryOption
    @Option(name: .long, help: "A description kept with the token.") var description: String?
    @Option(name: .long, help: "A policy the token carries, by name; repeatable.") var policyName: [String] = []
    @Option(name: .long, help: "A service whose rights the token carries (Consul's service identity); repeatable.") var serviceIdentity: [String] = []
    @Option(name: .long, help: "Expire the token after this long (Go duration, 1m to 24h).") var expiresAfter: String?

    func run() async throws {
        var fields: [(String, JSON)] = []
        if let description { fields.append(("Description", .string(description))) }
        if !policyName.isEmpty { fields.append(("Policies", .array(policyName.map { .object(JSONObject([("Name", .string($0))])) }))) }
        if !serviceIdentity.isEmpty {
            fields.append(("ServiceIdentities", .array(serviceIdentity.map { .object(JSONObject([("ServiceName", .string($0))])) })))
        }
        if let expiresAfter { fields.append(("ExpirationTTL", .string(expiresAfter))) }
        let token = try await aclCall(options, "PUT", "/v1/acl/token", body: .object(JSONObject(fields)))
        print("AccessorID: \(token["AccessorID"]?.stringValue ?? "")")
        print("SecretID:   \(token["SecretID"]?.stringValue ?? "")")
    }
}

struct ACLTokenList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List tokens (accessor, description, policies).")
    @OptionGroup var options: RegistryOption

    func run() async throws {
        let tokens = try await aclCall(options, "GET", "/v1/acl/tokens").arrayValue ?? []
        CLI.printTable([["ACCESSOR", "DESCRIPTION", "POLICIES", "SERVICE IDENTITIES"]] + tokens.map { token in
            [token["AccessorID"]?.stringValue ?? "", token["Description"]?.stringValue ?? "",
             (token["Policies"]?.arrayValue ?? []).compactMap { $0["Name"]?.stringValue }.joined(separator: ","),
             (token["ServiceIdentities"]?.arrayValue ?? []).compactMap { $0["ServiceName"]?.stringValue }.joined(separator: ",")]
        })
    }
}

struct ACLTokenRead: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "read", abstract: "Print a token as JSON (without --accessor: the token in use).")
    @OptionGroup var options: RegistryOption
    @Option(name: .long, help: "The token's accessor ID.") var accessor: String?

    func run() async throws {
        let path = "/v1/acl/token/" + (accessor.map { URLPath.escape($0) } ?? "self")
        print(String(decoding: try await aclCall(options, "GET", path).serialized(pretty: true), as: UTF8.self))
    }
}

struct ACLTokenDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a token by accessor ID.")
    @OptionGroup var options: RegistryOption
    @Option(name: .long, help: "The token's accessor ID.") var accessor: String

    func run() async throws {
        _ = try await aclCall(options, "DELETE", "/v1/acl/token/" + URLPath.escape(accessor))
        print("Deleted token \(accessor)")
    }
}

struct ACLPolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Create, list, read and delete ACL policies.",
        subcommands: [ACLPolicyCreate.self, ACLPolicyList.self, ACLPolicyRead.self, ACLPolicyDelete.self])
}

struct ACLPolicyCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a policy from rules in Consul's rule language (HCL or JSON).")
    @OptionGroup var options: RegistryOption
    @Option(name: .long, help: "The policy's name.") var name: String
    @Option(name: .long, help: "A description kept with the policy.") var description: String?
    @Option(name: .long, help: "The rules, or @FILE to read them from a file.") var rules: String

    func run() async throws {
        let text: String
        if rules.hasPrefix("@") {
            guard let read = try? String(contentsOfFile: String(rules.dropFirst()), encoding: .utf8) else {
                CLI.fail("error: cannot read the rules file \(rules.dropFirst())")
            }
            text = read
        } else {
            text = rules
        }
        var fields: [(String, JSON)] = [("Name", .string(name)), ("Rules", .string(text))]
        if let description { fields.append(("Description", .string(description))) }
        let policy = try await aclCall(options, "PUT", "/v1/acl/policy", body: .object(JSONObject(fields)))
        print("Created policy \(name) (ID \(policy["ID"]?.stringValue ?? ""))")
    }
}

struct ACLPolicyList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List policies.")
    @OptionGroup var options: RegistryOption

    func run() async throws {
        let policies = try await aclCall(options, "GET", "/v1/acl/policies").arrayValue ?? []
        CLI.printTable([["ID", "NAME", "DESCRIPTION"]] + policies.map { policy in
            [policy["ID"]?.stringValue ?? "", policy["Name"]?.stringValue ?? "", policy["Description"]?.stringValue ?? ""]
        })
    }
}

struct ACLPolicyRead: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "read", abstract: "Print a policy and its rules, by name.")
    @OptionGroup var options: RegistryOption
    @Option(name: .long, help: "The policy's name.") var name: String

    func run() async throws {
        let policy = try await aclCall(options, "GET", "/v1/acl/policy/name/" + URLPath.escape(name))
        print("\(policy["Name"]?.stringValue ?? "") (ID \(policy["ID"]?.stringValue ?? ""))")
        print(policy["Rules"]?.stringValue ?? "")
    }
}

struct ACLPolicyDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a policy by name.")
    @OptionGroup var options: RegistryOption
    @Option(name: .long, help: "The policy's name.") var name: String

    func run() async throws {
        let policy = try await aclCall(options, "GET", "/v1/acl/policy/name/" + URLPath.escape(name))
        guard let id = policy["ID"]?.stringValue else { CLI.fail("error: no policy named \(name)") }
        _ = try await aclCall(options, "DELETE", "/v1/acl/policy/" + id)
        print("Deleted policy \(name)")
    }
}
