import Foundation
import TrellisCore

/// What one token may do, compiled from the rules of all its policies, roles and identities (a
/// class: shared by every request of the token without copying its tables).
///
/// A named resource is decided by the rule for exactly its name, else by the longest matching
/// prefix rule, else by the registry's default policy (Consul's `acl.default_policy`). ACL
/// management itself (`acl`) is never granted by the default, as in Consul.
public final class ACLAuthorizer: Sendable {
    /// The token's accessor ID, named in refusals.
    public let accessorID: String
    /// When the token expires (Unix nanoseconds); 0: never.
    let expiresAt: Int
    /// Separates this token's renderings of a read (at this ACL index) from others' in the response cache.
    let cacheTag: String
    private let exact: [ACLResource: [String: ACLAccess]]
    /// Prefix rules per resource, longest prefix first.
    private let prefixes: [ACLResource: [(prefix: String, access: ACLAccess)]]
    private let global: [ACLResource: ACLAccess]
    private let defaultAllows: Bool
    /// Allows everything, ACL management included (ACLs disabled).
    private let unrestricted: Bool

    public init(accessorID: String, rules: ACLRules, defaultAllows: Bool, unrestricted: Bool = false, expiresAt: Int = 0,
                aclIndex: UInt64 = 0) {
        self.accessorID = accessorID
        self.expiresAt = expiresAt
        cacheTag = unrestricted ? "" : "\u{0}acl=\(accessorID)@\(aclIndex)"
        self.unrestricted = unrestricted
        exact = rules.exact
        prefixes = rules.prefix.mapValues { rules in
            rules.map { (prefix: $0.key, access: $0.value) }.sorted { $0.prefix.utf8.count > $1.prefix.utf8.count }
        }
        global = rules.global
        self.defaultAllows = defaultAllows
    }

    /// Whether the token's expiration time has passed.
    var expired: Bool { expiresAt != 0 && Int(Date().timeIntervalSince1970 * 1e9) >= expiresAt }

    /// The rule that applies to `name`, nil when none does.
    func rule(_ resource: ACLResource, _ name: String) -> ACLAccess? {
        if let access = exact[resource]?[name] { return access }
        return prefixes[resource]?.first { name.hasPrefix($0.prefix) }?.access
    }

    /// Whether the token has `needed` (`read`, `list` or `write`) on `name` of `resource`; global
    /// resources ignore `name`.
    public func allows(_ resource: ACLResource, _ name: String = "", _ needed: ACLAccess) -> Bool {
        if unrestricted { return true }
        let access = resource.isNamed ? rule(resource, name) : global[resource]
        if let access { return access.grants(needed) }
        return defaultAllows && resource != .acl
    }

    /// Consul's `KeyWritePrefix`, for deleting a whole tree: write on `prefix` itself, and no rule
    /// under it that withholds write.
    public func allowsKeyWritePrefix(_ prefix: String) -> Bool {
        if unrestricted { return true }
        let base = prefixes[.key]?.first { prefix.hasPrefix($0.prefix) }?.access
        if let base, base != .write { return false }
        let under = (exact[.key] ?? [:]).contains { $0.key.hasPrefix(prefix) && $0.value != .write }
            || (prefixes[.key] ?? []).contains { $0.prefix.hasPrefix(prefix) && $0.access != .write }
        if under { return false }
        return base != nil || defaultAllows
    }

    /// Consul's `ServiceReadAll`/`NodeReadAll`: `needed` on every name of `resource`, by the rule of
    /// the empty prefix (or the default), with no rule withholding it from some name.
    public func allowsEvery(_ resource: ACLResource, _ needed: ACLAccess) -> Bool {
        if unrestricted { return true }
        guard allows(resource, "", needed) else { return false }
        let withheld = (exact[resource] ?? [:]).values.contains { !$0.grants(needed) }
            || (prefixes[resource] ?? []).contains { !$0.access.grants(needed) }
        return !withheld
    }

    /// Consul's refusal: `Permission denied: token with AccessorID '…' lacks permission 'service:write' on "web"`.
    public func denial(_ resource: ACLResource, _ name: String = "", _ needed: ACLAccess) -> String {
        let on = resource.isNamed ? " on \"\(name)\"" : ""
        return "Permission denied: token with AccessorID '\(accessorID)' lacks permission '\(resource.rawValue):\(needed)'\(on)"
    }
}

extension ACLAuthorizer {
    /// Throws Consul's 403 when `needed` is lacking (for checks inside a write).
    func require(_ resource: ACLResource, _ name: String = "", _ needed: ACLAccess) throws(CatalogError) {
        guard allows(resource, name, needed) else { throw .forbidden(denial(resource, name, needed)) }
    }

    /// Consul's rule for checks: a service's check needs write on the service, a node's on the node.
    func requireCheckWrite(_ check: HealthCheck) throws(CatalogError) {
        if check.serviceID.isEmpty {
            try require(.node, check.node, .write)
        } else {
            try require(.service, check.serviceName, .write)
        }
    }

    /// Whether a check may be read: its service's read right, or its node's for node checks.
    func allowsCheckRead(_ check: HealthCheck) -> Bool {
        check.serviceID.isEmpty ? allows(.node, check.node, .read) : allows(.service, check.serviceName, .read)
    }
}
