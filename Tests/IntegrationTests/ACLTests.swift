import ConsulClient
import Foundation
import TrellisCore
import XCTest

/// ACLs against the real registry: Consul's token API, enforcement and filtering on every endpoint
/// group, blocking queries under a token, durability, bad input and the CLI.
final class ACLTests: XCTestCase {
    private static let management = "root-0000-secret"

    private func startRegistry(defaultPolicy: String = "deny", extra: [String] = []) async throws -> RegistryUnderTest {
        let registry = RegistryUnderTest(dataDir: try temporaryDirectory(self), arguments: [
            "--acl-enabled", "--acl-default-policy", defaultPolicy, "--acl-initial-management-token", Self.management,
        ] + extra)
        try await registry.start()
        addTeardownBlock { registry.child?.kill9() }
        return registry
    }

    private func send(_ registry: RegistryUnderTest, _ token: String?, _ method: String, _ path: String,
                      _ body: String? = nil) async throws -> (status: Int, headers: [String: String], text: String) {
        try await Self.request(registry, token, method, path, body)
    }

    private static func request(_ registry: RegistryUnderTest, _ token: String?, _ method: String, _ path: String,
                                _ body: String? = nil) async throws -> (status: Int, headers: [String: String], text: String) {
        let answer = try await aclRequest(registry.address, token, method, path, body)
        return (answer.status, answer.headers, answer.text)
    }

    /// Sends and checks the status.
    private func expect(_ registry: RegistryUnderTest, _ token: String?, _ method: String, _ path: String, _ body: String?,
                        _ status: Int, _ message: String = "", file: StaticString = #filePath, line: UInt = #line) async throws {
        let answer = try await send(registry, token, method, path, body)
        XCTAssertEqual(answer.status, status, "\(message) \(method) \(path): \(answer.text)", file: file, line: line)
    }

    /// Creates a policy with `rules` and a token carrying it (and `identities`); answers the secret.
    private func token(_ registry: RegistryUnderTest, _ name: String, rules: String, identities: [String] = [],
                       management: String = ACLTests.management) async throws -> String {
        let policy = try await send(registry, management, "PUT", "/v1/acl/policy",
                                    JSON.object(JSONObject([("Name", .string(name)), ("Rules", .string(rules))])).text)
        XCTAssertEqual(policy.status, 200, policy.text)
        var fields: [(String, JSON)] = [("Description", .string(name)),
                                        ("Policies", .array([.object(JSONObject([("Name", .string(name))]))]))]
        if !identities.isEmpty {
            fields.append(("ServiceIdentities", .array(identities.map { .object(JSONObject([("ServiceName", .string($0))])) })))
        }
        let created = try await send(registry, management, "PUT", "/v1/acl/token", JSON.object(JSONObject(fields)).text)
        XCTAssertEqual(created.status, 200, created.text)
        return try XCTUnwrap(try JSON.parse(created.text)["SecretID"]?.stringValue)
    }

    func testEveryEndpointGroupIsEnforcedWithConsulsStatusAndMessages() async throws {
        let registry = try await startRegistry()
        let web = try await token(registry, "web-sidecar", rules: #"key "trellis/policies/web" { policy = "read" }"#, identities: ["web"])
        let kvReader = try await token(registry, "kv-reader", rules: #"key_prefix "app/" { policy = "read" } session_prefix "" { policy = "write" } node_prefix "" { policy = "read" }"#)
        let operatorToken = try await token(registry, "ops", rules: #"operator = "write" agent_prefix "" { policy = "read" }"#)
        let m = Self.management
        let register = #"{"Name":"web","ID":"web-1","Port":8080}"#
        let registerDB = #"{"Name":"db","ID":"db-1","Port":5432}"#
        try await expect(registry, m, "PUT", "/v1/agent/service/register", registerDB, 200)
        try await expect(registry, m, "PUT", "/v1/kv/app/config", "v1", 200)
        try await expect(registry, m, "PUT", "/v1/kv/trellis/policies/db", "db policy", 200)

        let denied = "Permission denied: token with AccessorID '"
        let table: [(String, String?, String, String, String?, Int, String?)] = [
            // (what, token, method, path, body, status, text the answer contains)
            ("no token, default deny", nil, "PUT", "/v1/kv/app/x", "v", 403, "lacks permission 'key:write' on \"app/x\""),
            ("unknown token", "not-a-token", "GET", "/v1/catalog/services", nil, 403, "ACL not found"),
            ("sidecar registers its service", web, "PUT", "/v1/agent/service/register", register, 200, nil),
            ("sidecar cannot register another", web, "PUT", "/v1/agent/service/register", registerDB, 403, "lacks permission 'service:write' on \"db\""),
            ("sidecar cannot deregister another", web, "PUT", "/v1/agent/service/deregister/db-1", nil, 403, "'service:write' on \"db\""),
            ("sidecar reads its policy key", web, "GET", "/v1/kv/trellis/policies/web", nil, 404, nil),
            ("sidecar cannot write its policy", web, "PUT", "/v1/kv/trellis/policies/web", "x", 403, "'key:write'"),
            ("sidecar cannot read another's policy", web, "GET", "/v1/kv/trellis/policies/db", nil, 403, "'key:read' on \"trellis/policies/db\""),
            ("sidecar cannot write another's policy", web, "PUT", "/v1/kv/trellis/policies/db", "x", 403, "'key:write'"),
            ("sidecar reads upstream health", web, "GET", "/v1/health/service/db?passing=1", nil, 200, "db-1"),
            ("sidecar gets its own leaf", web, "GET", "/v1/agent/connect/ca/leaf/web", nil, 200, "CertPEM"),
            ("sidecar cannot get another's leaf", web, "GET", "/v1/agent/connect/ca/leaf/db", nil, 403, "'service:write' on \"db\""),
            ("roots need no token", nil, "GET", "/v1/agent/connect/ca/roots", nil, 200, "Roots"),
            ("status needs no token", nil, "GET", "/v1/status/leader", nil, 200, nil),
            ("sidecar reads intentions of its service", web, "GET", "/v1/connect/intentions/match?by=destination&name=web", nil, 200, nil),
            ("sidecar cannot write intentions", web, "PUT", "/v1/connect/intentions/exact?source=db&destination=web", #"{"Action":"allow"}"#, 403, "'intention:write' on \"web\""),
            ("intentions need write on the destination", m, "PUT", "/v1/connect/intentions/exact?source=db&destination=web", #"{"Action":"allow"}"#, 200, nil),
            ("kv reader reads", kvReader, "GET", "/v1/kv/app/config", nil, 200, "app/config"),
            ("kv reader cannot write", kvReader, "PUT", "/v1/kv/app/config", "v2", 403, "'key:write' on \"app/config\""),
            ("kv reader cannot delete a tree", kvReader, "DELETE", "/v1/kv/app?recurse", nil, 403, "'key:write' on \"app\""),
            ("kv reader cannot lock", kvReader, "PUT", "/v1/kv/app/lock?acquire=x", "me", 403, "'key:write'"),
            ("session on a node it may write", kvReader, "PUT", "/v1/session/create", nil, 200, "ID"),
            ("sidecar cannot create sessions", web, "PUT", "/v1/session/create", nil, 403, "'session:write' on \"node-1\""),
            ("transactions are checked per operation", kvReader, "PUT", "/v1/txn",
             #"[{"KV":{"Verb":"get","Key":"app/config"}},{"KV":{"Verb":"set","Key":"app/new","Value":"eA=="}}]"#, 409, "'key:write' on \\\"app/new\\\""),
            ("a readable transaction runs", kvReader, "PUT", "/v1/txn", #"[{"KV":{"Verb":"get","Key":"app/config"}}]"#, 200, "app/config"),
            ("catalog registration needs node write", web, "PUT", "/v1/catalog/register",
             #"{"Node":"n2","Address":"10.0.0.2","Service":{"Service":"web","Port":80}}"#, 403, "'node:write' on \"n2\""),
            ("agent self needs agent read", web, "GET", "/v1/agent/self", nil, 403, "'agent:read' on \"node-1\""),
            ("operator reads raft", operatorToken, "GET", "/v1/operator/raft/configuration", nil, 200, "Servers"),
            ("others do not", web, "GET", "/v1/operator/raft/configuration", nil, 403, "lacks permission 'operator:read'"),
            ("CA configuration needs operator write", web, "PUT", "/v1/connect/ca/configuration", #"{"Provider":"consul","Config":{}}"#, 403, "'operator:write'"),
            ("registry metrics need agent read", web, "GET", "/metrics", nil, 403, "'agent:read'"),
            ("operators read them", operatorToken, "GET", "/metrics", nil, 200, nil),
            ("events need event write", web, "PUT", "/v1/event/fire/deploy", nil, 403, "'event:write' on \"deploy\""),
            ("tokens need acl read", web, "GET", "/v1/acl/tokens", nil, 403, "lacks permission 'acl:read'"),
            ("policies need acl write", operatorToken, "PUT", "/v1/acl/policy", #"{"Name":"x"}"#, 403, "'acl:write'"),
            ("a token reads itself", web, "GET", "/v1/acl/token/self", nil, 200, "web-sidecar"),
            ("agent tokens need acl write", web, "PUT", "/v1/agent/token/default", #"{"Token":"x"}"#, 403, "'acl:write'"),
            ("the management token may do anything", m, "DELETE", "/v1/kv/app?recurse", nil, 200, "true"),
        ]
        for (what, token, method, path, body, status, contains) in table {
            let answer = try await send(registry, token, method, path, body)
            XCTAssertEqual(answer.status, status, "\(what): \(method) \(path): \(answer.text)")
            if let contains { XCTAssertTrue(answer.text.contains(contains), "\(what): \(answer.text)") }
            if status == 403 && contains?.contains("lacks") == true { XCTAssertTrue(answer.text.hasPrefix(denied), "\(what): \(answer.text)") }
        }
        // Nothing a refused request carried was stored.
        let config = try await send(registry, m, "GET", "/v1/kv/trellis/policies/db?raw")
        XCTAssertEqual(config.text, "db policy")
        let servicesAnswer = try await send(registry, m, "GET", "/v1/agent/services")
        let services = try JSON.parse(servicesAnswer.text)
        XCTAssertEqual(services.objectValue?.pairs.map(\.key).sorted(), ["db-1", "web-1"])
    }

    func testListsAreFilteredToWhatTheTokenMayRead() async throws {
        let registry = try await startRegistry()
        let m = Self.management
        for (name, id) in [("web", "web-1"), ("db", "db-1"), ("billing", "billing-1")] {
            try await expect(registry, m, "PUT", "/v1/agent/service/register", #"{"Name":"\#(name)","ID":"\#(id)"}"#, 200)
        }
        for key in ["app/a", "app/b", "secret/c"] { try await expect(registry, m, "PUT", "/v1/kv/\(key)", "v", 200) }
        let limited = try await token(registry, "limited", rules: """
            service_prefix "" { policy = "read" }
            service "billing" { policy = "deny" }
            node_prefix "" { policy = "read" }
            key_prefix "app/" { policy = "read" }
            """)

        let services = try await send(registry, limited, "GET", "/v1/catalog/services")
        XCTAssertEqual(services.status, 200)
        XCTAssertEqual(try JSON.parse(services.text).objectValue?.pairs.map(\.key).sorted(), ["consul", "db", "web"])
        XCTAssertEqual(services.headers["x-consul-results-filtered-by-acls"], "true")
        let all = try await send(registry, m, "GET", "/v1/catalog/services")
        XCTAssertNil(all.headers["x-consul-results-filtered-by-acls"], "nothing hidden from the management token")
        XCTAssertEqual(try JSON.parse(all.text).objectValue?.pairs.count, 4)

        let keys = try await send(registry, limited, "GET", "/v1/kv/?keys")
        XCTAssertEqual(try JSON.parse(keys.text), .strings(["app/a", "app/b"]))
        XCTAssertEqual(keys.headers["x-consul-results-filtered-by-acls"], "true")
        let tree = try await send(registry, limited, "GET", "/v1/kv/?recurse")
        XCTAssertEqual(try JSON.parse(tree.text).arrayValue?.count, 2)
        let billing = try await send(registry, limited, "GET", "/v1/health/service/billing")
        XCTAssertEqual(billing.text, "[]")
        XCTAssertEqual(billing.headers["x-consul-results-filtered-by-acls"], "true")
        let agent = try await send(registry, limited, "GET", "/v1/agent/services")
        XCTAssertEqual(try JSON.parse(agent.text).objectValue?.pairs.map(\.key).sorted(), ["db-1", "web-1"])
        let anonymous = try await send(registry, nil, "GET", "/v1/catalog/services")
        XCTAssertEqual(anonymous.text, "{}")

        // The default policy `allow` with a token that denies one service.
        let open = try await startRegistry(defaultPolicy: "allow")
        try await expect(open, nil, "PUT", "/v1/kv/x", "v", 200, "anonymous may write under default allow")
        try await expect(open, nil, "GET", "/v1/acl/tokens", nil, 403, "but never manage ACLs")
    }

    func testBlockingQueriesWakeOnlyForWhatTheTokenSeesAndEndWhenTheTokenGoes() async throws {
        let registry = try await startRegistry()
        let m = Self.management
        try await expect(registry, m, "PUT", "/v1/kv/app/a", "1", 200)
        let reader = try await token(registry, "app-reader", rules: #"key_prefix "app/" { policy = "read" }"#)
        let first = try await send(registry, reader, "GET", "/v1/kv/?recurse")
        let index = try XCTUnwrap(first.headers["x-consul-index"])

        let address = registry.address
        let waiting = Task { try await aclRequest(address, reader, "GET", "/v1/kv/?recurse&index=\(index)&wait=30s", nil) }
        try await Task.sleep(for: .milliseconds(300))
        try await expect(registry, m, "PUT", "/v1/kv/hidden/x", "secret", 200)
        try await Task.sleep(for: .milliseconds(700))
        try await expect(registry, m, "PUT", "/v1/kv/app/b", "2", 200)
        let woken = try await waiting.value
        XCTAssertEqual(woken.status, 200)
        let keys = (try JSON.parse(woken.text).arrayValue ?? []).compactMap { $0["Key"]?.stringValue }
        XCTAssertEqual(keys, ["app/a", "app/b"], "woken by the visible write, never showing the hidden one")

        // A token deleted while its query waits ends the wait with Consul's answer for unknown tokens.
        let selfAnswer = try await send(registry, reader, "GET", "/v1/acl/token/self")
        let self_ = try JSON.parse(selfAnswer.text)
        let accessor = try XCTUnwrap(self_["AccessorID"]?.stringValue)
        let latest = try XCTUnwrap(woken.headers["x-consul-index"])
        let orphaned = Task { try await aclRequest(address, reader, "GET", "/v1/kv/?recurse&index=\(latest)&wait=30s", nil) }
        try await Task.sleep(for: .milliseconds(300))
        try await expect(registry, m, "DELETE", "/v1/acl/token/\(accessor)", nil, 200)
        let ended = try await orphaned.value
        XCTAssertEqual(ended.status, 403)
        XCTAssertEqual(ended.text, "ACL not found")
    }

    func testBootstrapOnceTokensSurviveACrashAndBadInputChangesNothing() async throws {
        let registry = RegistryUnderTest(dataDir: try temporaryDirectory(self), arguments: ["--acl-enabled", "--acl-default-policy", "deny"])
        try await registry.start()
        addTeardownBlock { registry.child?.kill9() }
        let boot = try await send(registry, nil, "PUT", "/v1/acl/bootstrap")
        XCTAssertEqual(boot.status, 200, boot.text)
        let bootstrap = try JSON.parse(boot.text)
        XCTAssertEqual(bootstrap["Policies"]?[0]?["Name"], .string("global-management"))
        let secret = try XCTUnwrap(bootstrap["SecretID"]?.stringValue)
        let again = try await send(registry, nil, "PUT", "/v1/acl/bootstrap")
        XCTAssertEqual(again.status, 403)
        XCTAssertTrue(again.text.hasPrefix("Permission denied: ACL bootstrap no longer allowed (reset index: "), again.text)

        let badRules = try await send(registry, secret, "PUT", "/v1/acl/policy", #"{"Name":"bad","Rules":"key \"a\" {\n  policy = \"sometimes\"\n}"}"#)
        XCTAssertEqual(badRules.status, 400)
        XCTAssertTrue(badRules.text.contains("At 2:"), badRules.text)
        let badName = try await send(registry, secret, "PUT", "/v1/acl/policy", #"{"Name":"no spaces","Rules":""}"#)
        XCTAssertEqual(badName.status, 400)
        let unknownPolicy = try await send(registry, secret, "PUT", "/v1/acl/token", #"{"Policies":[{"Name":"missing"}]}"#)
        XCTAssertEqual(unknownPolicy.status, 400)
        XCTAssertTrue(unknownPolicy.text.contains("No such ACL policy with name \"missing\""), unknownPolicy.text)
        let badTTL = try await send(registry, secret, "PUT", "/v1/acl/token", #"{"ExpirationTTL":"5s"}"#)
        XCTAssertEqual(badTTL.status, 400)
        let badJSON = try await send(registry, secret, "PUT", "/v1/acl/token", #"{"Description": "#)
        XCTAssertEqual(badJSON.status, 400)
        let policiesAnswer = try await send(registry, secret, "GET", "/v1/acl/policies")
        let policies = try JSON.parse(policiesAnswer.text)
        XCTAssertEqual(policies.arrayValue?.compactMap { $0["Name"]?.stringValue }.sorted(), ["builtin/global-read-only", "global-management"])
        let tokensAnswer = try await send(registry, secret, "GET", "/v1/acl/tokens")
        XCTAssertEqual(try JSON.parse(tokensAnswer.text).arrayValue?.count, 2)

        let writer = try await token(registry, "writer", rules: #"key_prefix "" { policy = "write" }"#, management: secret)
        let soon = Date.ISO8601FormatStyle().format(Date().addingTimeInterval(2))
        let expiring = try await send(registry, secret, "PUT", "/v1/acl/token", #"{"Description":"brief","ExpirationTime":"\#(soon)","Policies":[{"Name":"writer"}]}"#)
        XCTAssertEqual(expiring.status, 200, expiring.text)
        let brief = try XCTUnwrap(try JSON.parse(expiring.text)["SecretID"]?.stringValue)
        try await expect(registry, brief, "PUT", "/v1/kv/k", "v", 200)

        try await registry.crashAndRestart()
        try await expect(registry, writer, "PUT", "/v1/kv/after", "v", 200, "tokens and policies are durable")
        try await expect(registry, nil, "PUT", "/v1/acl/bootstrap", nil, 403, "so is the bootstrap")
        try await eventually(timeout: 5, "the token expires") {
            try await self.send(registry, brief, "PUT", "/v1/kv/k", "v").text == "ACL not found"
        }
    }

    func testTheCLIManagesTokensAndPolicies() async throws {
        let registry = try await startRegistry()
        let environment = ["CONSUL_HTTP_ADDR": registry.address, "CONSUL_HTTP_TOKEN": Self.management]
        func trellis(_ arguments: [String], environment: [String: String]) throws -> (status: Int32, output: String) {
            try runToEnd(TrellisBinary.path, arguments, environment: ["CONSUL_HTTP_TOKEN": ""].merging(environment) { $1 })
        }
        let rules = try temporaryDirectory(self) + "/rules.hcl"
        try #"key_prefix "cli/" { policy = "write" }"#.write(toFile: rules, atomically: true, encoding: .utf8)
        let policy = try trellis(["acl", "policy", "create", "--name", "cli-writer", "--rules", "@" + rules], environment: environment)
        XCTAssertEqual(policy.status, 0, policy.output)
        let created = try trellis(["acl", "token", "create", "--description", "cli", "--policy-name", "cli-writer",
                                   "--service-identity", "web"], environment: environment)
        XCTAssertEqual(created.status, 0, created.output)
        let secret = try XCTUnwrap(created.output.split(separator: "\n").first { $0.hasPrefix("SecretID:") }?
            .split(separator: " ").last.map(String.init))
        let tokenFile = try temporaryDirectory(self) + "/token"
        try secret.write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let put = try trellis(["kv", "put", "cli/key", "value", "--token-file", tokenFile], environment: ["CONSUL_HTTP_ADDR": registry.address])
        XCTAssertEqual(put.status, 0, put.output)
        let refused = try trellis(["kv", "put", "other/key", "value", "--token", secret], environment: ["CONSUL_HTTP_ADDR": registry.address])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.output.contains("Permission denied"), refused.output)
        let list = try trellis(["acl", "token", "list"], environment: environment)
        XCTAssertTrue(list.output.contains("cli-writer") && list.output.contains("web"), list.output)
        let bad = try trellis(["acl", "policy", "create", "--name", "broken", "--rules", "key {"], environment: environment)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.output.contains("failed to parse rules"), bad.output)
    }
}

/// One answer of the registry to an ACL test.
struct ACLAnswer: Sendable {
    let status: Int
    let headers: [String: String]
    let text: String
}

/// Sends one request with `token` (none when nil) to the registry at `address`.
func aclRequest(_ address: String, _ token: String?, _ method: String, _ path: String, _ body: String?) async throws -> ACLAnswer {
    let client = ConsulClient(address: address, token: token, environment: [:])
    let answer = try await client.send(method, path, body: body.map { Array($0.utf8) })
    return ACLAnswer(status: answer.status, headers: answer.headers, text: String(decoding: answer.body, as: UTF8.self))
}
