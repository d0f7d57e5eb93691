import TrellisCore

/// An access level of Consul's rule language. Between policies of one token the higher raw value
/// wins for the same rule (deny over write over list over read), as Consul merges them.
public enum ACLAccess: Int, Comparable, Sendable, CustomStringConvertible {
    case read = 1, list, write, deny

    public init?(policy: String) {
        switch policy {
        case "read": self = .read
        case "list": self = .list
        case "write": self = .write
        case "deny": self = .deny
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .read: "read"
        case .list: "list"
        case .write: "write"
        case .deny: "deny"
        }
    }

    /// Whether a rule of this level grants `needed` (`read`, `list` or `write`).
    func grants(_ needed: ACLAccess) -> Bool {
        switch self {
        case .write: true
        case .list: needed == .read || needed == .list
        case .read: needed == .read
        case .deny: false
        }
    }

    public static func < (a: ACLAccess, b: ACLAccess) -> Bool { a.rawValue < b.rawValue }
}

/// What a rule governs, named as Consul names it in `lacks permission '<resource>:<access>'`.
public enum ACLResource: String, CaseIterable, Sendable {
    // Resources with a name, ruled by `<resource> "name"` and `<resource>_prefix "prefix"`.
    case agent, event, intention, key, node, query, service, session
    // Resources with one rule each, `<resource> = "level"`.
    case acl, keyring, mesh, `operator`, peering

    var isNamed: Bool {
        switch self {
        case .agent, .event, .intention, .key, .node, .query, .service, .session: true
        case .acl, .keyring, .mesh, .`operator`, .peering: false
        }
    }
}

/// The rules of one or more policies: per named resource, exact and prefix rules; per global
/// resource, one level. Merging keeps, for each rule, the level that wins.
public struct ACLRules: Sendable, Equatable {
    var exact: [ACLResource: [String: ACLAccess]] = [:]
    var prefix: [ACLResource: [String: ACLAccess]] = [:]
    var global: [ACLResource: ACLAccess] = [:]

    public init() {}

    /// Parses a policy's `Rules` (HCL or JSON). Errors name the line and what is wrong.
    public init(parsing text: String) throws(RuleSyntaxError) {
        for node in try HCLRules.parse(text) { try add(node) }
    }

    mutating func set(_ resource: ACLResource, _ name: String, prefix isPrefix: Bool, _ access: ACLAccess) {
        if isPrefix {
            prefix[resource, default: [:]][name] = max(prefix[resource]?[name] ?? access, access)
        } else {
            exact[resource, default: [:]][name] = max(exact[resource]?[name] ?? access, access)
        }
    }

    public mutating func merge(_ other: ACLRules) {
        for (resource, rules) in other.exact { for (name, access) in rules { set(resource, name, prefix: false, access) } }
        for (resource, rules) in other.prefix { for (name, access) in rules { set(resource, name, prefix: true, access) } }
        for (resource, access) in other.global { global[resource] = max(global[resource] ?? access, access) }
    }

    /// The rule document's resource names: `key`, `key_prefix`, …, `operator`.
    private static func resource(named key: String) -> (ACLResource, prefix: Bool)? {
        let isPrefix = key.hasSuffix("_prefix")
        let base = isPrefix ? String(key.dropLast("_prefix".count)) : key
        guard let resource = ACLResource(rawValue: base), resource != .intention, isPrefix ? resource.isNamed : true else { return nil }
        return (resource, isPrefix)
    }

    private mutating func add(_ node: RuleNode) throws(RuleSyntaxError) {
        guard let (resource, isPrefix) = Self.resource(named: node.key) else {
            throw RuleSyntaxError(line: node.line, column: 1, message: "unknown rule \"\(node.key)\"")
        }
        guard resource.isNamed else {
            guard case .string(let level) = node.value, let access = ACLAccess(policy: level), access != .list else {
                throw RuleSyntaxError(line: node.line, column: 1, message: "invalid \(node.key) policy \(Self.show(node.value)): want read, write or deny")
            }
            global[resource] = max(global[resource] ?? access, access)
            return
        }
        guard case .object(let named) = node.value else {
            throw RuleSyntaxError(line: node.line, column: 1, message: "\(node.key) needs a name and a block, as in \(node.key) \"name\" { policy = \"read\" }")
        }
        for entry in named {
            guard case .object(let fields) = entry.value else {
                throw RuleSyntaxError(line: entry.line, column: 1, message: "\(node.key) \"\(entry.key)\" needs a block with policy = \"…\"")
            }
            var policy: ACLAccess?
            var intentions: ACLAccess?
            for field in fields {
                let allowsList = resource == .key
                guard case .string(let level) = field.value, let access = ACLAccess(policy: level), allowsList || access != .list else {
                    throw RuleSyntaxError(line: field.line, column: 1, message:
                        "invalid \(field.key) \(Self.show(field.value)) for \(node.key) \"\(entry.key)\": want read, write\(resource == .key ? ", list" : "") or deny")
                }
                switch field.key {
                case "policy": policy = access
                case "intentions" where resource == .service && access != .list: intentions = access
                default:
                    throw RuleSyntaxError(line: field.line, column: 1, message: "unknown field \"\(field.key)\" in \(node.key) \"\(entry.key)\"")
                }
            }
            guard let policy else {
                throw RuleSyntaxError(line: entry.line, column: 1, message: "\(node.key) \"\(entry.key)\" has no policy")
            }
            set(resource, entry.key, prefix: isPrefix, policy)
            if resource == .service {
                // Consul: a service rule without `intentions` reads them when it reads or writes the service.
                set(.intention, entry.key, prefix: isPrefix, intentions ?? (policy == .deny ? .deny : .read))
            }
        }
    }

    private static func show(_ value: RuleValue) -> String {
        switch value {
        case .string(let s): "\"\(s)\""
        case .object: "block"
        case .other(let s): s
        }
    }
}
