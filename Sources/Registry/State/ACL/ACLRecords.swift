import TrellisCore

/// A token's or role's reference to a policy or role, by ID (the name is looked up when shown).
public struct ACLLink: Sendable, Equatable {
    public var id = ""
    public var name = ""
}

/// Consul's `ServiceIdentities` entry: the rights a service's instances and sidecars need.
public struct ACLServiceIdentity: Sendable, Equatable {
    public var serviceName = ""
    /// Where the identity applies; empty: every datacenter.
    public var datacenters: [String] = []

    /// Consul's synthetic policy for a service identity.
    var rules: String {
        """
        service "\(serviceName)" { policy = "write" }
        service "\(serviceName)-sidecar-proxy" { policy = "write" }
        service_prefix "" { policy = "read" }
        node_prefix "" { policy = "read" }
        """
    }
}

/// Consul's `NodeIdentities` entry: the rights of a node's agent, in one datacenter.
public struct ACLNodeIdentity: Sendable, Equatable {
    public var nodeName = ""
    public var datacenter = ""

    var rules: String {
        """
        node "\(nodeName)" { policy = "write" }
        service_prefix "" { policy = "read" }
        """
    }
}

/// Consul's `TemplatedPolicies` entry: a built-in template filled with a name.
public struct ACLTemplatedPolicy: Sendable, Equatable {
    public var templateName = ""
    /// `TemplateVariables.name`.
    public var name = ""
    public var datacenters: [String] = []

    /// The templates this registry knows, as Consul names them.
    static let templates = ["builtin/service", "builtin/node", "builtin/dns"]

    /// The template's rules, nil for an unknown template.
    func rules(datacenter: String) -> String? {
        switch templateName {
        case "builtin/service": ACLServiceIdentity(serviceName: name).rules
        case "builtin/node": ACLNodeIdentity(nodeName: name, datacenter: datacenter).rules
        case "builtin/dns": "node_prefix \"\" { policy = \"read\" }\nservice_prefix \"\" { policy = \"read\" }\nquery_prefix \"\" { policy = \"read\" }"
        default: nil
        }
    }

    /// Whether the template needs a `name`.
    var needsName: Bool { templateName != "builtin/dns" }

    /// What each template grants, as `/v1/acl/templated-policies` describes it.
    static let descriptions = [
        "builtin/service": "Registers the named service and its sidecar proxy, and reads every service and node.",
        "builtin/node": "Registers the named node, and reads every service.",
        "builtin/dns": "Reads every service, node and prepared query, as DNS answers need.",
    ]
}

/// An ACL token: its secret, and the policies, roles and identities whose rules it carries.
public struct ACLToken: Sendable, Equatable {
    public static let anonymousAccessorID = "00000000-0000-0000-0000-000000000002"
    public static let anonymousSecret = "anonymous"

    public var accessorID = ""
    public var secretID = ""
    public var description = ""
    public var policies: [ACLLink] = []
    public var roles: [ACLLink] = []
    public var serviceIdentities: [ACLServiceIdentity] = []
    public var nodeIdentities: [ACLNodeIdentity] = []
    public var templatedPolicies: [ACLTemplatedPolicy] = []
    public var local = false
    public var authMethod = ""
    /// Unix time in nanoseconds; 0: never expires.
    public var expirationTime = 0
    public var createTime = 0
    public var createIndex: UInt64 = 0
    public var modifyIndex: UInt64 = 0

    public init() {}

    /// A token of the `global-management` policy.
    static func management(accessorID: String, secretID: String, description: String) -> ACLToken {
        var token = ACLToken()
        token.accessorID = accessorID
        token.secretID = secretID
        token.description = description
        token.policies = [ACLLink(id: ACLPolicy.globalManagementID)]
        return token
    }
}

/// An ACL policy: named rules.
public struct ACLPolicy: Sendable, Equatable {
    public static let globalManagementID = "00000000-0000-0000-0000-000000000001"
    public static let globalReadOnlyID = "00000000-0000-0000-0000-000000000002"

    public var id = ""
    public var name = ""
    public var description = ""
    public var rules = ""
    public var datacenters: [String] = []
    public var createIndex: UInt64 = 0
    public var modifyIndex: UInt64 = 0

    public init() {}

    /// Consul's built-in policies: `global-management` and `builtin/global-read-only`.
    static let builtin: [ACLPolicy] = [
        builtinPolicy(globalManagementID, "global-management", "Builtin Policy that grants unlimited access", level: "write"),
        builtinPolicy(globalReadOnlyID, "builtin/global-read-only",
                      "Builtin Policy that grants unlimited read-only access to all components", level: "read"),
    ]

    private static func builtinPolicy(_ id: String, _ name: String, _ description: String, level: String) -> ACLPolicy {
        var policy = ACLPolicy()
        policy.id = id
        policy.name = name
        policy.description = description
        let prefixed = ["agent", "event", "key", "node", "query", "service", "session"].map { resource in
            "\(resource)_prefix \"\" {\n\tpolicy = \"\(level)\"\(resource == "service" ? "\n\tintentions = \"\(level)\"" : "")\n}"
        }
        let global = ["acl", "keyring", "mesh", "operator", "peering"].map { "\($0) = \"\(level)\"" }
        policy.rules = "\n" + (global + prefixed).joined(separator: "\n")
        return policy
    }
}

/// An ACL role: policies and identities shared by the tokens that link it.
public struct ACLRole: Sendable, Equatable {
    public var id = ""
    public var name = ""
    public var description = ""
    public var policies: [ACLLink] = []
    public var serviceIdentities: [ACLServiceIdentity] = []
    public var nodeIdentities: [ACLNodeIdentity] = []
    public var templatedPolicies: [ACLTemplatedPolicy] = []
    public var createIndex: UInt64 = 0
    public var modifyIndex: UInt64 = 0

    public init() {}
}

/// The storage layouts of the ACL tables. Layout 1 each.
enum ACLRecords {
    private static let link = RecordLayout<ACLLink>([.string("ID", \.id)])
    private static let serviceIdentity = RecordLayout<ACLServiceIdentity>([
        .string("ServiceName", \.serviceName), .strings("Datacenters", \.datacenters),
    ])
    private static let nodeIdentity = RecordLayout<ACLNodeIdentity>([
        .string("NodeName", \.nodeName), .string("Datacenter", \.datacenter),
    ])
    private static let templated = RecordLayout<ACLTemplatedPolicy>([
        .string("TemplateName", \.templateName), .string("Name", \.name), .strings("Datacenters", \.datacenters),
    ])

    static let token = RecordCodec<ACLToken>(table: .aclToken, empty: { ACLToken() }, layouts: [
        RecordLayout([
            .string("AccessorID", \.accessorID), .string("SecretID", \.secretID), .string("Description", \.description),
            .list("Policies", \.policies, link, empty: { ACLLink() }), .list("Roles", \.roles, link, empty: { ACLLink() }),
            .list("ServiceIdentities", \.serviceIdentities, serviceIdentity, empty: { ACLServiceIdentity() }),
            .list("NodeIdentities", \.nodeIdentities, nodeIdentity, empty: { ACLNodeIdentity() }),
            .list("TemplatedPolicies", \.templatedPolicies, templated, empty: { ACLTemplatedPolicy() }),
            .bool("Local", \.local), .string("AuthMethod", \.authMethod), .int("ExpirationTime", \.expirationTime),
            .int("CreateTime", \.createTime), .index("CreateIndex", \.createIndex), .index("ModifyIndex", \.modifyIndex),
        ]),
    ])

    static let policy = RecordCodec<ACLPolicy>(table: .aclPolicy, empty: { ACLPolicy() }, layouts: [
        RecordLayout([
            .string("ID", \.id), .string("Name", \.name), .string("Description", \.description), .string("Rules", \.rules),
            .strings("Datacenters", \.datacenters), .index("CreateIndex", \.createIndex), .index("ModifyIndex", \.modifyIndex),
        ]),
    ])

    static let role = RecordCodec<ACLRole>(table: .aclRole, empty: { ACLRole() }, layouts: [
        RecordLayout([
            .string("ID", \.id), .string("Name", \.name), .string("Description", \.description),
            .list("Policies", \.policies, link, empty: { ACLLink() }),
            .list("ServiceIdentities", \.serviceIdentities, serviceIdentity, empty: { ACLServiceIdentity() }),
            .list("NodeIdentities", \.nodeIdentities, nodeIdentity, empty: { ACLNodeIdentity() }),
            .list("TemplatedPolicies", \.templatedPolicies, templated, empty: { ACLTemplatedPolicy() }),
            .index("CreateIndex", \.createIndex), .index("ModifyIndex", \.modifyIndex),
        ]),
    ])
}
