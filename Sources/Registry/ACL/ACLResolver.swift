import Foundation
import Synchronization
import TrellisCore
import TrellisHTTP

/// Consul's `acl` settings of the registry.
public struct ACLSettings: Sendable {
    /// `acl.enabled`: whether tokens are required and rules enforced.
    public var enabled = false
    /// `acl.default_policy`: what a token may do where no rule of it applies.
    public var defaultAllows = true
    /// `acl.tokens.initial_management`: a management token created with this secret on start.
    public var initialManagementToken: String?
    /// `acl.tokens.default`: the token of requests that carry none (else the anonymous token).
    public var defaultToken: String?

    public init() {}
}

/// Turns a request's secret into the `ACLAuthorizer` of its token, compiled once per secret and
/// ACL index and reused until any ACL record changes; a secret seen at the current index is
/// answered without reading the catalog.
public final class ACLResolver: Sendable {
    let settings: ACLSettings
    let datacenter: String
    /// By the secret the request resolves to (after the default token stands in for none).
    private let compiled = Mutex<[String: (index: UInt64, authorizer: ACLAuthorizer)]>([:])
    private static let cacheCapacity = 4096
    /// Tokens set with `PUT /v1/agent/token/:type`; `default` stands in for requests without one.
    private let agentTokens = Mutex<[String: String]>([:])

    /// The kinds of agent token Consul accepts (and the names older agents used).
    static let agentTokenTypes: [String: String] = [
        "default": "default", "agent": "agent", "agent_recovery": "agent_recovery", "agent_master": "agent_recovery",
        "acl_agent_master_token": "agent_recovery", "acl_token": "default", "acl_agent_token": "agent",
        "replication": "replication", "acl_replication_token": "replication",
        "config_file_service_registration": "config_file_service_registration", "dns": "dns",
    ]

    func agentToken(_ type: String) -> String? { agentTokens.withLock { $0[type] } }

    func setAgentToken(_ type: String, _ secret: String) {
        agentTokens.withLock { $0[type] = secret.isEmpty ? nil : secret }
    }

    init(settings: ACLSettings, datacenter: String) {
        self.settings = settings
        self.datacenter = datacenter
        if let token = settings.defaultToken { setAgentToken("default", token) }
    }

    /// Everything allowed: the authorizer of every request while ACLs are disabled.
    static let unrestricted = ACLAuthorizer(accessorID: "", rules: ACLRules(), defaultAllows: true, unrestricted: true)

    /// The authorizer of `secret` (the agent's default token, else the anonymous token, when nil or
    /// empty); nil when no token has that secret or it has expired (Consul's `ACL not found`).
    func authorizer(secret: String?, in state: borrowing RegistryState) -> ACLAuthorizer? {
        guard settings.enabled else { return Self.unrestricted }
        let secret = effectiveSecret(secret)
        let index = state.aclIndex
        if let cached = compiled.withLock({ $0[secret] }), cached.index == index {
            return cached.authorizer.expired ? nil : cached.authorizer
        }
        guard let accessorID = state.aclAccessorID(secret: secret), let token = state.aclToken(accessorID: accessorID) else { return nil }
        let authorizer = ACLAuthorizer(accessorID: token.accessorID, rules: state.aclRules(of: token, datacenter: datacenter),
                                       defaultAllows: settings.defaultAllows, expiresAt: token.expirationTime, aclIndex: index)
        if authorizer.expired { return nil }
        compiled.withLock { compiled in
            if compiled.count >= Self.cacheCapacity { compiled.removeAll(keepingCapacity: true) }
            compiled[secret] = (index, authorizer)
        }
        return authorizer
    }

    /// The authorizer of `secret` compiled at `aclIndex` (the catalog's current one), when there
    /// is one that has not expired; nil sends the caller to `authorizer(secret:in:)`.
    func cachedAuthorizer(secret: String?, aclIndex: UInt64) -> ACLAuthorizer? {
        let secret = effectiveSecret(secret)
        guard let cached = compiled.withLock({ $0[secret] }), cached.index == aclIndex, !cached.authorizer.expired else { return nil }
        return cached.authorizer
    }

    /// The secret a request acts with: its own, else the agent's default token, else the anonymous token.
    private func effectiveSecret(_ secret: String?) -> String {
        secret.flatMap { $0.isEmpty ? nil : $0 } ?? agentTokens.withLock { $0["default"] } ?? ACLToken.anonymousSecret
    }
}

/// Who a request acts as: its token's authorizer, re-resolved when ACL records change (a
/// blocking query that outlives a token change sees the change), and whether the answer being
/// built left something out (`X-Consul-Results-Filtered-By-ACLs`).
///
/// One per request, used only on that request's event loop; while ACLs are disabled every request
/// shares `unrestricted`, which allows everything and is never written.
final class RequestACL: @unchecked Sendable {
    let secret: String?
    /// Nil for `unrestricted`.
    private let resolver: ACLResolver?
    private(set) var authorizer: ACLAuthorizer
    private var resolvedAt: UInt64
    /// Set by `visible` when it hides something during `rendering`.
    private var filtered = false

    /// Resolves `secret` now; nil when it names no token.
    init?(secret: String?, resolver: ACLResolver, state: borrowing RegistryState) {
        self.secret = secret
        self.resolver = resolver
        guard let authorizer = resolver.authorizer(secret: secret, in: state) else { return nil }
        self.authorizer = authorizer
        resolvedAt = state.aclIndex
    }

    /// With `authorizer`, resolved for `secret` at `aclIndex` already.
    init(secret: String?, resolver: ACLResolver, authorizer: ACLAuthorizer, resolvedAt aclIndex: UInt64) {
        self.secret = secret
        self.resolver = resolver
        self.authorizer = authorizer
        resolvedAt = aclIndex
    }

    private init() {
        secret = nil
        resolver = nil
        authorizer = ACLResolver.unrestricted
        resolvedAt = 0
    }

    static let unrestricted = RequestACL()

    /// What separates this token's renderings of a read from another token's in the response cache.
    var cacheTag: String { authorizer.cacheTag }

    var enabled: Bool { resolver != nil }

    /// Re-resolves after an ACL change or past the token's expiry; false when the token is gone or expired.
    func refresh(_ state: borrowing RegistryState) -> Bool {
        guard let resolver else { return true }
        if state.aclIndex == resolvedAt && !authorizer.expired { return true }
        guard let authorizer = resolver.authorizer(secret: secret, in: state) else { return false }
        self.authorizer = authorizer
        resolvedAt = state.aclIndex
        return true
    }

    /// The answer `render` builds, marked `X-Consul-Results-Filtered-By-ACLs` when it left
    /// something out.
    func rendering(_ render: () -> HTTPResponse) -> HTTPResponse {
        guard enabled else { return render() }
        filtered = false
        var response = render()
        if filtered { response.headers.add(name: ConsulHeaders.filteredByACLs, value: "true") }
        return response
    }

    /// Whether `check` may be read (its service's or node's read right); notes filtering.
    func visibleCheck(_ check: HealthCheck) -> Bool {
        if authorizer.allowsCheckRead(check) { return true }
        filtered = true
        return false
    }

    /// Whether `name` may be read; notes the answer as filtered when not.
    func visible(_ resource: ACLResource, _ name: String, _ needed: ACLAccess = .read) -> Bool {
        if authorizer.allows(resource, name, needed) { return true }
        filtered = true
        return false
    }
}
