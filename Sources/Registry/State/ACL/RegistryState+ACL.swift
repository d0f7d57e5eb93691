import TrellisCore

extension WatchKey {
    /// Every ACL table: tokens, policies, roles, auth methods, binding rules.
    public static let acl = "acl"
}

/// Tokens (found by accessor, or by a digest of their secret), policies with their parsed
/// rules, roles, auth methods and binding rules, and whether the ACL system was bootstrapped.
struct ACLTable: Sendable {
    var tokens: [String: ACLToken] = [:]
    /// Accessor IDs by a keyed hash of their secret (SipHash with this process's random seed): which
    /// path a lookup takes tells nothing about the secrets held, and the candidates found are then
    /// compared in constant time.
    var accessorsBySecret: [Int: [String]] = [:]
    var policies: [String: ACLPolicy] = [:]
    /// Each policy's rules, parsed when it is stored.
    var policyRules: [String: ACLRules] = [:]
    var roles: [String: ACLRole] = [:]
    var authMethods: [String: JSONObject] = [:]
    var bindingRules: [String: JSONObject] = [:]
    /// The index of the bootstrap; 0 while `PUT /v1/acl/bootstrap` may still be called.
    var bootstrapIndex: UInt64 = 0

    mutating func setToken(_ token: ACLToken) {
        removeToken(token.accessorID)
        tokens[token.accessorID] = token
        accessorsBySecret[token.secretID.hashValue, default: []].append(token.accessorID)
    }

    mutating func removeToken(_ accessorID: String) {
        guard let old = tokens.removeValue(forKey: accessorID) else { return }
        let key = old.secretID.hashValue
        accessorsBySecret[key]?.removeAll { $0 == accessorID }
        if accessorsBySecret[key]?.isEmpty == true { accessorsBySecret[key] = nil }
    }

    /// Stores `policy`; a stored policy whose rules no longer parse keeps no rules (and grants nothing).
    mutating func setPolicy(_ policy: ACLPolicy) {
        policies[policy.id] = policy
        policyRules[policy.id] = (try? ACLRules(parsing: policy.rules)) ?? ACLRules()
    }

    mutating func removePolicy(_ id: String) {
        policies[id] = nil
        policyRules[id] = nil
    }
}

/// ACL records: Consul's rules for tokens, policies and roles, and a token's merged rules.
extension RegistryState {
    // MARK: Reading

    public var aclIndex: UInt64 { watchIndex(WatchKey.acl) }
    public var aclTokens: [ACLToken] { acl.tokens.values.sorted { $0.accessorID < $1.accessorID } }
    public var aclPolicies: [ACLPolicy] { acl.policies.values.sorted { $0.name < $1.name } }
    public var aclRoles: [ACLRole] { acl.roles.values.sorted { $0.name < $1.name } }
    public var aclAuthMethods: [JSONObject] { acl.authMethods.keys.sorted().compactMap { acl.authMethods[$0] } }
    public var aclBindingRules: [JSONObject] { acl.bindingRules.keys.sorted().compactMap { acl.bindingRules[$0] } }
    public var aclBootstrapIndex: UInt64 { acl.bootstrapIndex }

    public func aclToken(accessorID: String) -> ACLToken? { acl.tokens[accessorID] }

    /// The token whose secret is `secret`, compared in constant time once found by keyed hash.
    public func aclToken(secret: String) -> ACLToken? {
        aclAccessorID(secret: secret).flatMap { acl.tokens[$0] }
    }

    /// The accessor ID of the token whose secret is `secret` (without copying the token).
    func aclAccessorID(secret: String) -> String? {
        for accessor in acl.accessorsBySecret[secret.hashValue] ?? [] {
            if let secretID = acl.tokens[accessor]?.secretID, ConstantTime.equal(secretID, secret) { return accessor }
        }
        return nil
    }

    public func aclPolicy(id: String) -> ACLPolicy? { acl.policies[id] }
    public func aclPolicy(name: String) -> ACLPolicy? { acl.policies.values.first { $0.name == name } }
    public func aclRole(id: String) -> ACLRole? { acl.roles[id] }
    public func aclRole(name: String) -> ACLRole? { acl.roles.values.first { $0.name == name } }
    public func aclAuthMethod(name: String) -> JSONObject? { acl.authMethods[name] }
    public func aclBindingRule(id: String) -> JSONObject? { acl.bindingRules[id] }

    /// Every rule `token` carries in `datacenter`: its policies, its roles' policies, and the
    /// synthetic policies of its and its roles' service, node and templated identities.
    public func aclRules(of token: ACLToken, datacenter: String) -> ACLRules {
        var rules = ACLRules()
        var sources: [String] = []
        func addIdentities(_ services: [ACLServiceIdentity], _ nodes: [ACLNodeIdentity], _ templated: [ACLTemplatedPolicy]) {
            for identity in services where identity.datacenters.isEmpty || identity.datacenters.contains(datacenter) {
                sources.append(identity.rules)
            }
            for identity in nodes where identity.datacenter == datacenter { sources.append(identity.rules) }
            for policy in templated where policy.datacenters.isEmpty || policy.datacenters.contains(datacenter) {
                if let text = policy.rules(datacenter: datacenter) { sources.append(text) }
            }
        }
        func addPolicies(_ links: [ACLLink]) {
            for link in links {
                guard let policy = acl.policies[link.id], policy.datacenters.isEmpty || policy.datacenters.contains(datacenter),
                      let parsed = acl.policyRules[link.id] else { continue }
                rules.merge(parsed)
            }
        }
        addPolicies(token.policies)
        addIdentities(token.serviceIdentities, token.nodeIdentities, token.templatedPolicies)
        for link in token.roles {
            guard let role = acl.roles[link.id] else { continue }
            addPolicies(role.policies)
            addIdentities(role.serviceIdentities, role.nodeIdentities, role.templatedPolicies)
        }
        for text in sources {
            if let parsed = try? ACLRules(parsing: text) { rules.merge(parsed) }
        }
        return rules
    }

    // MARK: Writing

    mutating func putACLToken(_ token: ACLToken) {
        acl.setToken(token)
        recordACL(.aclToken, token.accessorID, ACLRecords.token.encode(token))
    }

    /// Stores a new token, stamped with its creation time (Unix nanoseconds) and this write's index.
    @discardableResult
    mutating func createACLToken(_ token: ACLToken, now: Int) -> ACLToken {
        var token = token
        token.createTime = now
        token.createIndex = writeIndex
        token.modifyIndex = writeIndex
        putACLToken(token)
        return token
    }

    mutating func deleteACLToken(_ accessorID: String) {
        guard acl.tokens[accessorID] != nil else { return }
        acl.removeToken(accessorID)
        recordACL(.aclToken, accessorID, nil)
    }

    mutating func putACLPolicy(_ policy: ACLPolicy) {
        acl.setPolicy(policy)
        recordACL(.aclPolicy, policy.id, ACLRecords.policy.encode(policy))
    }

    mutating func deleteACLPolicy(_ id: String) {
        guard acl.policies[id] != nil else { return }
        acl.removePolicy(id)
        recordACL(.aclPolicy, id, nil)
    }

    mutating func putACLRole(_ role: ACLRole) {
        acl.roles[role.id] = role
        recordACL(.aclRole, role.id, ACLRecords.role.encode(role))
    }

    mutating func deleteACLRole(_ id: String) {
        guard acl.roles.removeValue(forKey: id) != nil else { return }
        recordACL(.aclRole, id, nil)
    }

    mutating func putACLAuthMethod(name: String, _ method: JSONObject) {
        acl.authMethods[name] = method
        recordACL(.aclAuthMethod, name, JSONRecord.encode(.object(method)))
    }

    /// Deletes an auth method and the binding rules that name it.
    mutating func deleteACLAuthMethod(name: String) {
        guard acl.authMethods.removeValue(forKey: name) != nil else { return }
        recordACL(.aclAuthMethod, name, nil)
        for (id, rule) in acl.bindingRules where rule.field("AuthMethod")?.stringValue == name { deleteACLBindingRule(id: id) }
    }

    mutating func putACLBindingRule(id: String, _ rule: JSONObject) {
        acl.bindingRules[id] = rule
        recordACL(.aclBindingRule, id, JSONRecord.encode(.object(rule)))
    }

    mutating func deleteACLBindingRule(id: String) {
        guard acl.bindingRules.removeValue(forKey: id) != nil else { return }
        recordACL(.aclBindingRule, id, nil)
    }

    /// Adds an ACL record change (`nil`: deleted) to the write in progress.
    private mutating func recordACL(_ table: Table, _ key: String, _ value: [UInt8]?) {
        record(value.map { .put(table: table, key: key, value: $0) } ?? .delete(table: table, key: key), touching: [WatchKey.acl])
    }

    /// Ends the bootstrap window (`PUT /v1/acl/bootstrap` or an initial management token).
    mutating func markACLBootstrapped() {
        acl.bootstrapIndex = writeIndex
        recordACL(.aclBootstrap, "bootstrap", IndexRecord.encode(writeIndex))
    }

    /// What every ACL-enabled registry has: the built-in policies, the anonymous token, and the
    /// initial management token when one is configured (which ends the bootstrap window). A no-op
    /// for records that exist (another registry sharing the store made them, or an earlier start).
    mutating func initializeACL(initialManagementSecret: String?, accessorID: String, now: Int) {
        for builtin in ACLPolicy.builtin where acl.policies[builtin.id] == nil {
            var policy = builtin
            policy.createIndex = writeIndex
            policy.modifyIndex = writeIndex
            putACLPolicy(policy)
        }
        if acl.tokens[ACLToken.anonymousAccessorID] == nil {
            var anonymous = ACLToken()
            anonymous.accessorID = ACLToken.anonymousAccessorID
            anonymous.secretID = ACLToken.anonymousSecret
            anonymous.description = "Anonymous Token"
            createACLToken(anonymous, now: now)
        }
        guard let secret = initialManagementSecret, !secret.isEmpty, aclToken(secret: secret) == nil else { return }
        createACLToken(ACLToken.management(accessorID: accessorID, secretID: secret, description: "Initial Management Token"), now: now)
        if acl.bootstrapIndex == 0 { markACLBootstrapped() }
    }

    /// Loads one stored ACL record.
    mutating func loadACL(_ table: Table, key: String, _ value: [UInt8]?) throws(RecordError) {
        switch (table, value) {
        case (.aclToken, let value?): acl.setToken(try ACLRecords.token.decode(value))
        case (.aclToken, nil): acl.removeToken(key)
        case (.aclPolicy, let value?): acl.setPolicy(try ACLRecords.policy.decode(value))
        case (.aclPolicy, nil): acl.removePolicy(key)
        case (.aclRole, let value?): let role = try ACLRecords.role.decode(value); acl.roles[role.id] = role
        case (.aclRole, nil): acl.roles[key] = nil
        case (.aclAuthMethod, let value?): acl.authMethods[key] = try JSONRecord.decode(value, table: table).objectValue
        case (.aclAuthMethod, nil): acl.authMethods[key] = nil
        case (.aclBindingRule, let value?): acl.bindingRules[key] = try JSONRecord.decode(value, table: table).objectValue
        case (.aclBindingRule, nil): acl.bindingRules[key] = nil
        case (.aclBootstrap, let value?): acl.bootstrapIndex = try IndexRecord.decode(value, table: table)
        default: break
        }
    }
}
