import ConsulClient
import Foundation
import Policy
import TrellisCore

/// The tokens of a fleet whose registry runs with ACLs default-deny: a management token for
/// `trellis up` itself (and the operator, through `endpoints.env`), and for each process only the
/// rights it needs — a sidecar its service's identity plus reading its own policy key, the
/// collector reading the catalog and metrics and registering itself.
///
/// Secrets live in files of mode 0600 under the data directory and are reused on the next start.
struct FleetACL: Sendable {
    let managementTokenFile: String
    let managementToken: String
    private let directory: String

    /// Reads the management token of an earlier start, or makes one.
    init(dataDirectory: String) throws {
        directory = dataDirectory + "/tokens"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        managementTokenFile = directory + "/management.token"
        managementToken = try Self.secret(in: managementTokenFile)
    }

    /// The registry's flags: ACLs on, default deny, the management token from its file.
    var registryArguments: [String] {
        ["--acl-enabled", "--acl-default-policy", "deny", "--acl-initial-management-token-file", managementTokenFile]
    }

    var management: (String) -> ConsulClient { { ConsulClient(address: $0, token: managementToken) } }

    /// A sidecar's token: the service identity of `service`, reading its policy key and the
    /// registry agent's settings (its default intention policy). Answers the token file.
    func sidecarToken(_ service: String, registry: String) async throws -> String {
        let rules = "key \"\(SidecarPolicy.key(for: service))\" { policy = \"read\" }\nagent_prefix \"\" { policy = \"read\" }"
        return try await token(name: "sidecar-\(service)", rules: rules, serviceIdentity: service, registry: registry).file
    }

    /// A gateway's token: the service identity of its name (register, get its leaf certificate,
    /// discover backends) and reading its policy key. Answers the token file.
    func gatewayToken(_ name: String, registry: String) async throws -> String {
        try await token(name: "gateway-\(name)", rules: "key \"\(GatewayPolicy.key(for: name))\" { policy = \"read\" }",
                        serviceIdentity: name, registry: registry).file
    }

    /// The collector's token: registering itself, reading the catalog and the registry's metrics.
    func collectorToken(registry: String) async throws -> String {
        try await token(name: "collector", rules: "agent_prefix \"\" { policy = \"read\" }",
                        serviceIdentity: WellKnownNames.collectorService, registry: registry).file
    }

    /// Gives the registry's DNS interface a token that reads services and nodes (Consul's `dns` agent token).
    func enableDNS(registry: String) async throws {
        let secret = try await token(name: "dns", rules: "service_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }",
                                     serviceIdentity: nil, registry: registry).secret
        try await management(registry).expectOK(.PUT, "/v1/agent/token/dns",
                                                body: JSON.object(JSONObject([("Token", .string(secret))])).serialized())
    }

    /// A token with the policy `trellis-<name>` (made or updated to `rules`) and the service
    /// identity; the one of an earlier start is reused while the registry still knows it.
    private func token(name: String, rules: String, serviceIdentity: String?,
                       registry: String) async throws -> (file: String, secret: String) {
        let client = management(registry)
        let policyName = "trellis-\(name)"
        let (status, _, body) = try await client.send("GET", "/v1/acl/policy/name/\(policyName)")
        var policy: [(String, JSON)] = [("Name", .string(policyName)), ("Rules", .string(rules)),
                                        ("Description", .string("Rights of the fleet's \(name)"))]
        if status == 200, let id = try JSON.parse(body)["ID"]?.stringValue {
            policy.append(("ID", .string(id)))
            try await client.expectOK(.PUT, "/v1/acl/policy/\(id)", body: JSON.object(JSONObject(policy)).serialized())
        } else {
            try await client.expectOK(.PUT, "/v1/acl/policy", body: JSON.object(JSONObject(policy)).serialized())
        }
        let file = directory + "/\(name).token"
        if let secret = try? String(contentsOfFile: file, encoding: .utf8),
           let (status, _, _) = try? await ConsulClient(address: registry, token: secret).send("GET", "/v1/acl/token/self"), status == 200 {
            return (file, secret)
        }
        var fields: [(String, JSON)] = [("Description", .string("trellis up: \(name)")),
                                        ("Policies", .array([.object(JSONObject([("Name", .string(policyName))]))]))]
        if let serviceIdentity {
            fields.append(("ServiceIdentities", .array([.object(JSONObject([("ServiceName", .string(serviceIdentity))]))])))
        }
        let (created, _) = try await client.json("PUT", "/v1/acl/token", body: JSON.object(JSONObject(fields)).serialized())
        guard let secret = created["SecretID"]?.stringValue else { throw ConfigError(description: "the registry made no token for \(name)") }
        try Self.write(secret, to: file)
        return (file, secret)
    }

    /// The secret kept in `file`, made (a random UUID) when there is none yet.
    private static func secret(in file: String) throws -> String {
        if let text = try? String(contentsOfFile: file, encoding: .utf8), !text.isEmpty { return text }
        let secret = UUID().uuidString.lowercased()
        try write(secret, to: file)
        return secret
    }

    private static func write(_ secret: String, to file: String) throws {
        guard FileManager.default.createFile(atPath: file, contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw ConfigError(description: "cannot write the token file \(file)")
        }
    }
}
