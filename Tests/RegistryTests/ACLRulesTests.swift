import Foundation
@testable import Registry
import TrellisCore
import XCTest

/// Consul's rule language (HCL and JSON), its precedence and the authorizer compiled from it.
final class ACLRulesTests: XCTestCase {
    private func authorizer(_ texts: [String], defaultAllows: Bool = false) throws -> ACLAuthorizer {
        var rules = ACLRules()
        for text in texts { rules.merge(try ACLRules(parsing: text)) }
        return ACLAuthorizer(accessorID: "a-1", rules: rules, defaultAllows: defaultAllows)
    }

    func testHCLAndJSONRulesParseAlike() throws {
        let hcl = """
        # the app's keys
        key_prefix "app/" {
          policy = "write"
        }
        key "app/secret" { policy = "deny" }   // one key withheld
        service_prefix "" { policy = "read" }
        service "web" {
          policy = "write"
          intentions = "write"
        }
        /* global rights */
        operator = "read"
        """
        let json = #"""
        {"key_prefix": {"app/": {"policy": "write"}}, "key": {"app/secret": {"policy": "deny"}},
         "service_prefix": {"": {"policy": "read"}}, "service": {"web": {"policy": "write", "intentions": "write"}},
         "operator": "read"}
        """#
        XCTAssertEqual(try ACLRules(parsing: hcl), try ACLRules(parsing: json))
        let authz = try authorizer([hcl])
        XCTAssertTrue(authz.allows(.key, "app/config", .write))
        XCTAssertFalse(authz.allows(.key, "app/secret", .read), "an exact rule beats the longest prefix")
        XCTAssertFalse(authz.allows(.key, "other", .read), "default deny")
        XCTAssertTrue(authz.allows(.service, "db", .read))
        XCTAssertFalse(authz.allows(.service, "db", .write))
        XCTAssertTrue(authz.allows(.intention, "db", .read), "service read implies intentions read")
        XCTAssertFalse(authz.allows(.intention, "db", .write))
        XCTAssertTrue(authz.allows(.intention, "web", .write))
        XCTAssertTrue(authz.allows(.operator, "", .read))
        XCTAssertFalse(authz.allows(.operator, "", .write))
        XCTAssertFalse(authz.allows(.acl, "", .read))
    }

    func testTheLongestPrefixDecidesAndDenyWinsBetweenPolicies() throws {
        let authz = try authorizer([
            #"key_prefix "" { policy = "read" } key_prefix "team/" { policy = "write" } key_prefix "team/locked/" { policy = "list" }"#,
            #"key_prefix "team/" { policy = "deny" }"#,
            #"node_prefix "" { policy = "write" }"#, #"node_prefix "" { policy = "read" }"#,
        ])
        XCTAssertFalse(authz.allows(.key, "team/a", .read), "deny in one policy beats write in another")
        XCTAssertTrue(authz.allows(.key, "team/locked/x", .list), "the longer prefix decides")
        XCTAssertFalse(authz.allows(.key, "team/locked/x", .write))
        XCTAssertTrue(authz.allows(.key, "elsewhere", .read))
        XCTAssertTrue(authz.allows(.node, "n1", .write), "write beats read between policies")
    }

    func testRecursiveDeletesNeedWriteOnEverythingUnderThePrefix() throws {
        let authz = try authorizer([#"key_prefix "app/" { policy = "write" } key "app/keep" { policy = "read" }"#])
        XCTAssertFalse(authz.allowsKeyWritePrefix("app/"), "a rule under the prefix withholds write")
        XCTAssertTrue(authz.allowsKeyWritePrefix("app/tmp/"))
        XCTAssertFalse(authz.allowsKeyWritePrefix(""))
        XCTAssertTrue(try authorizer([], defaultAllows: true).allowsKeyWritePrefix(""))
    }

    func testDefaultAllowGrantsEverythingButACLManagement() throws {
        let authz = try authorizer([#"service "db" { policy = "deny" }"#], defaultAllows: true)
        XCTAssertTrue(authz.allows(.key, "x", .write))
        XCTAssertFalse(authz.allows(.service, "db", .read))
        XCTAssertFalse(authz.allows(.intention, "db", .read), "a denied service denies its intentions")
        XCTAssertFalse(authz.allows(.acl, "", .read), "as Consul: the default never grants ACL management")
        XCTAssertTrue(try authorizer([ACLPolicy.builtin[0].rules]).allows(.acl, "", .write), "global-management")
        XCTAssertEqual(authz.denial(.service, "db", .write),
                       "Permission denied: token with AccessorID 'a-1' lacks permission 'service:write' on \"db\"")
        XCTAssertEqual(authz.denial(.operator, "", .read), "Permission denied: token with AccessorID 'a-1' lacks permission 'operator:read'")
    }

    func testServiceIdentitiesCarryConsulsSyntheticRules() throws {
        let authz = try authorizer([ACLServiceIdentity(serviceName: "web").rules])
        XCTAssertTrue(authz.allows(.service, "web", .write))
        XCTAssertTrue(authz.allows(.service, "web-sidecar-proxy", .write))
        XCTAssertFalse(authz.allows(.service, "db", .write))
        XCTAssertTrue(authz.allows(.service, "db", .read))
        XCTAssertTrue(authz.allows(.node, "any", .read))
        XCTAssertFalse(authz.allows(.key, "trellis/policies/web", .read))
    }

    func testRulesThatDoNotParseNameTheLine() {
        let cases: [(String, String)] = [
            ("key_prefix \"a/\" {\n  policy = \"wrte\"\n}", "At 2:1: invalid policy \"wrte\""),
            ("service \"web\" {\n  policy = \"list\"\n}", "want read, write or deny"),
            ("key \"a\" {\n  policy = \"read\"\n", "expected '}' to close the block"),
            ("\n\nkeyy \"a\" { policy = \"read\" }", "At 3:1: unknown rule \"keyy\""),
            ("operator = read", "unquoted value \"read\""),
            ("key \"a\" { intentions = \"read\" }", "unknown field \"intentions\""),
            ("service \"a\" { intentions = \"read\" }", "has no policy"),
            ("key = \"read\"", "key needs a name and a block"),
            ("{\"key\": ", "invalid JSON"),
            (String(repeating: "key { ", count: 40), "nest deeper"),
            ("key \"a\" { policy = \"read", "not closed"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try ACLRules(parsing: text), text) { error in
                XCTAssertTrue("\(error)".contains(message), "\(text): \(error)")
            }
        }
        XCTAssertEqual(try ACLRules(parsing: ""), ACLRules())
    }

    /// The comparison's timing is not measured here (tests carry no timings); its results are.
    func testConstantTimeComparisonComparesWholeSecrets() {
        XCTAssertTrue(ConstantTime.equal("b3f1-secret", "b3f1-secret"))
        XCTAssertFalse(ConstantTime.equal("b3f1-secret", "b3f1-secreT"))
        XCTAssertFalse(ConstantTime.equal("b3f1-secret", "b3f1-secret2"))
        XCTAssertFalse(ConstantTime.equal("", "x"))
        XCTAssertTrue(ConstantTime.equal("", ""))
    }

    func testATokenIsFoundByItsSecretAndItsRulesMerged() throws {
        var state = RegistryState()
        _ = try state.write { (state: inout RegistryState) throws(CatalogError) in
            state.initializeACL(initialManagementSecret: "root", accessorID: "m-1", now: 0)
            var policy = ACLPolicy()
            policy.id = "p-1"
            policy.name = "kv"
            policy.rules = #"key_prefix "kv/" { policy = "write" }"#
            state.putACLPolicy(policy)
            var role = ACLRole()
            role.id = "r-1"
            role.name = "ops"
            role.policies = [ACLLink(id: "p-1")]
            state.putACLRole(role)
            var token = ACLToken()
            token.accessorID = "t-1"
            token.secretID = "s-1"
            token.roles = [ACLLink(id: "r-1")]
            token.serviceIdentities = [ACLServiceIdentity(serviceName: "web", datacenters: ["dc2"])]
            token.nodeIdentities = [ACLNodeIdentity(nodeName: "n1", datacenter: "dc1")]
            state.putACLToken(token)
        }
        XCTAssertNil(state.aclToken(secret: "s-2"))
        let token = try XCTUnwrap(state.aclToken(secret: "s-1"))
        let authz = ACLAuthorizer(accessorID: token.accessorID, rules: state.aclRules(of: token, datacenter: "dc1"), defaultAllows: false)
        XCTAssertTrue(authz.allows(.key, "kv/x", .write), "through the role's policy")
        XCTAssertTrue(authz.allows(.node, "n1", .write), "the node identity of this datacenter")
        XCTAssertFalse(authz.allows(.service, "web", .write), "the service identity is for dc2 only")
        XCTAssertEqual(state.aclToken(secret: "anonymous")?.accessorID, ACLToken.anonymousAccessorID)
        XCTAssertEqual(state.aclToken(secret: "root")?.policies.first?.id, ACLPolicy.globalManagementID)
        XCTAssertNotEqual(state.aclBootstrapIndex, 0, "an initial management token ends the bootstrap window")

        // The records read back from their stored form.
        let records = try XCTUnwrap(state.write { (state: inout RegistryState) throws(CatalogError) in
            state.putACLToken(token)
        }.1?.ops)
        var reloaded = RegistryState()
        for case .put(let table, let key, let value) in records where table == .aclToken {
            _ = try reloaded.apply(.put(table: table, key: key, value: value), now: .now)
        }
        XCTAssertEqual(reloaded.aclToken(secret: "s-1"), token)
    }
}
