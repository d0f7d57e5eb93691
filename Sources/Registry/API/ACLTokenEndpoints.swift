import Foundation
import NIOCore
import TrellisCore
import TrellisHTTP

/// `/v1/acl/bootstrap`, `/v1/acl/token*`, `/v1/acl/tokens`, `/v1/acl/login|logout`: Consul's
/// token API, its shapes and messages.
extension ConsulAPI {
    /// Consul's bounds on `ExpirationTTL` (`acl.token_min_expiration_ttl`, `…_max_…`).
    static let tokenTTLRange: ClosedRange<Duration> = .seconds(60)...(.seconds(24 * 3600))

    /// Consul's 401 for ACL endpoints while ACLs are disabled; nil when enabled.
    func aclDisabled(_ context: Context) -> EventLoopFuture<HTTPResponse>? {
        aclResolver.settings.enabled ? nil : immediate(HTTPResponse.text(.unauthorized, "ACL support disabled"), context)
    }

    /// Creates the built-in ACL records on start when ACLs are enabled.
    func initializeACL() async throws {
        guard aclResolver.settings.enabled else { return }
        let secret = aclResolver.settings.initialManagementToken
        let now = Self.unixNanos(), accessorID = Self.newUUID()
        try await catalog.write { (state: inout RegistryState) throws(CatalogError) in
            state.initializeACL(initialManagementSecret: secret, accessorID: accessorID, now: now)
        }
    }

    /// `PUT /v1/acl/bootstrap`: the first management token, once.
    func aclBootstrap(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let disabled = aclDisabled(context) { return disabled }
        let now = Self.unixNanos()
        return write(context, { (state: inout RegistryState) throws(CatalogError) -> JSON in
            guard state.aclBootstrapIndex == 0 else {
                throw .forbidden("Permission denied: ACL bootstrap no longer allowed (reset index: \(state.aclBootstrapIndex))")
            }
            let token = state.createACLToken(.management(accessorID: Self.newUUID(), secretID: Self.newUUID(),
                                                         description: "Bootstrap Token (Global Management)"), now: now)
            state.markACLBootstrapped()
            return ACLJSON.token(token, in: state)
        }, render: { .json($0.serialized()) })
    }

    /// `GET /v1/acl/tokens` with `?policy=`, `?role=`, `?authmethod=`, `?servicename=`.
    func aclTokenList(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let disabled = aclDisabled(context) { return disabled }
        if let refused = refusal(context, .acl, "", .read) { return refused }
        let query = context.request.query
        let policy = query["policy"] ?? "", role = query["role"] ?? ""
        let method = query["authmethod"] ?? "", service = query["servicename"] ?? ""
        return blockingJSON(context, key: WatchKey.acl) { state in
            .array(state.aclTokens.filter { token in
                (policy.isEmpty || token.policies.contains { $0.id == policy })
                    && (role.isEmpty || token.roles.contains { $0.id == role })
                    && (method.isEmpty || token.authMethod == method)
                    && (service.isEmpty || token.serviceIdentities.contains { $0.serviceName == service })
            }.map { ACLJSON.token($0, in: state) })
        }
    }

    /// `PUT /v1/acl/token`: a new token.
    func aclTokenCreate(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let disabled = aclDisabled(context) { return disabled }
        if let refused = refusal(context, .acl, "", .write) { return refused }
        let fields: TokenFields
        do { fields = try TokenFields(try decodeBody(context)) } catch { return decodeFailed(error, context) }
        let now = Self.unixNanos()
        return write(context, { (state: inout RegistryState) throws(CatalogError) -> JSON in
            var token = ACLToken()
            token.accessorID = try Self.newTokenID(fields.accessorID, "AccessorID", taken: { state.aclToken(accessorID: $0) != nil })
            token.secretID = try Self.newTokenID(fields.secretID, "SecretID", taken: { state.aclToken(secret: $0) != nil })
            if let ttl = fields.expirationTTL {
                guard fields.expirationTime == nil else { throw .badRequest("Expiration TTL and Expiration Time cannot both be set") }
                guard Self.tokenTTLRange.contains(ttl) else {
                    throw .badRequest("Expiration TTL '\(GoDuration.format(ttl))' should be between \(GoDuration.format(Self.tokenTTLRange.lowerBound)) and \(GoDuration.format(Self.tokenTTLRange.upperBound))")
                }
                token.expirationTime = now + Int(ttl.components.seconds) * 1_000_000_000
            } else if let time = fields.expirationTime {
                guard time > now else { throw .badRequest("ExpirationTime cannot be in the past") }
                token.expirationTime = time
            }
            token.local = fields.local ?? false
            try fields.apply(to: &token, in: state)
            return ACLJSON.token(state.createACLToken(token, now: now), in: state)
        }, render: { .json($0.serialized()) })
    }

    /// `GET|PUT|DELETE /v1/acl/token/:accessor`, `GET /v1/acl/token/self`, `PUT /v1/acl/token/:accessor/clone`.
    func aclToken(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let disabled = aclDisabled(context) { return disabled }
        if context.rest == "self" && context.request.method == .GET { return aclTokenSelf(context) }
        if context.rest.hasSuffix("/clone") && context.request.method == .PUT {
            return aclTokenClone(context, accessorID: String(context.rest.dropLast("/clone".count)))
        }
        let accessorID = context.rest
        switch context.request.method {
        case .GET:
            if let refused = refusal(context, .acl, "", .read) { return refused }
            // Consul answers an unknown accessor with its `ACL not found`.
            return aclRead(context, missing: .text(.forbidden, "ACL not found")) { state in
                state.aclToken(accessorID: accessorID).map { ACLJSON.token($0, in: state) }
            }
        case .PUT:
            if let refused = refusal(context, .acl, "", .write) { return refused }
            let fields: TokenFields
            do { fields = try TokenFields(try decodeBody(context)) } catch { return decodeFailed(error, context) }
            return write(context, { (state: inout RegistryState) throws(CatalogError) -> JSON in
                guard var token = state.aclToken(accessorID: accessorID) else { throw .badRequest("Cannot find token to update") }
                if let id = fields.accessorID, !id.isEmpty, id != accessorID {
                    throw .badRequest("Token Accessor ID in URL and payload do not match")
                }
                if let secret = fields.secretID, !secret.isEmpty, secret != token.secretID {
                    throw .badRequest("Changing a tokens SecretID is not permitted")
                }
                if let local = fields.local, local != token.local { throw .badRequest("Cannot toggle local mode of \(accessorID)") }
                if let time = fields.expirationTime, time != token.expirationTime {
                    throw .badRequest("Cannot change expiration time of \(accessorID)")
                }
                if fields.expirationTTL != nil { throw .badRequest("Cannot update ExpirationTTL field of an existing token") }
                try fields.apply(to: &token, in: state)
                token.modifyIndex = state.writeIndex
                state.putACLToken(token)
                return ACLJSON.token(token, in: state)
            }, render: { .json($0.serialized()) })
        case .DELETE:
            if let refused = refusal(context, .acl, "", .write) { return refused }
            let own = context.acl.authorizer.accessorID
            return write(context, { (state: inout RegistryState) throws(CatalogError) -> Bool in
                guard accessorID != ACLToken.anonymousAccessorID else {
                    throw .badRequest("Delete operation not permitted on the anonymous token")
                }
                guard accessorID != own else { throw .badRequest("Deletion of the request's authorization token is not permitted") }
                state.deleteACLToken(accessorID)
                return true
            }, render: { Self.boolResponse($0) })
        default:
            return immediate(.text(.methodNotAllowed, "method \(context.request.method.rawValue) not allowed"), context)
        }
    }

    /// `GET /v1/acl/token/self`: the request's own token.
    private func aclTokenSelf(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let accessorID = context.acl.authorizer.accessorID
        return aclRead(context, missing: .text(.forbidden, "ACL not found")) { state in
            state.aclToken(accessorID: accessorID).map { ACLJSON.token($0, in: state) }
        }
    }

    /// One ACL record read now, with the ACL tables' index; `missing` when `find` finds nothing.
    func aclRead(_ context: Context, missing: HTTPResponse, _ find: (borrowing RegistryState) -> JSON?) -> EventLoopFuture<HTTPResponse> {
        let pretty = context.request.query.has("pretty")
        return immediate(catalog.read { state in
            guard let found = find(state) else { return missing }
            var response = HTTPResponse.json(found.serialized(pretty: pretty))
            ConsulHeaders.addQueryMeta(&response.headers, index: state.aclIndex)
            return response
        }, context)
    }

    private func aclTokenClone(_ context: Context, accessorID: String) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .acl, "", .write) { return refused }
        let description: String?
        do {
            description = context.request.bodyBytes.isEmpty ? nil : try decodeBody(context).string("Description")
        } catch { return decodeFailed(error, context) }
        let now = Self.unixNanos()
        return write(context, { (state: inout RegistryState) throws(CatalogError) -> JSON in
            guard var token = state.aclToken(accessorID: accessorID) else { throw .forbidden("ACL not found") }
            guard token.authMethod.isEmpty else { throw .badRequest("Cannot clone a token created from an auth method") }
            token.accessorID = Self.newUUID()
            token.secretID = Self.newUUID()
            if let description { token.description = description }
            return ACLJSON.token(state.createACLToken(token, now: now), in: state)
        }, render: { .json($0.serialized()) })
    }

    /// `POST /v1/acl/logout`: deletes the request's token, which must come from a login.
    func aclLogout(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let disabled = aclDisabled(context) { return disabled }
        guard ConsulAPI.secret(of: context.request) != nil else { return immediate(.text(.forbidden, "ACL not found"), context) }
        let accessorID = context.acl.authorizer.accessorID
        return write(context, { (state: inout RegistryState) throws(CatalogError) -> Bool in
            guard let token = state.aclToken(accessorID: accessorID), !token.authMethod.isEmpty else {
                throw .forbidden("Permission denied: token wasn't created via login")
            }
            state.deleteACLToken(accessorID)
            return true
        }, render: { Self.boolResponse($0) })
    }

    static func unixNanos() -> Int { Int(Date().timeIntervalSince1970 * 1e9) }
    static func newUUID() -> String { UUID().uuidString.lowercased() }

    /// A new token's accessor or secret: the given UUID when free, else a generated one.
    private static func newTokenID(_ given: String?, _ field: String, taken: (String) -> Bool) throws(CatalogError) -> String {
        guard let given, !given.isEmpty else {
            var id = newUUID()
            while taken(id) { id = newUUID() }
            return id
        }
        guard isUUID(given) else { throw .badRequest("Invalid Token: \(field) is not a valid UUID") }
        guard !given.hasPrefix("00000000-0000-0000-0000-0000000000") else {
            throw .badRequest("Invalid Token: UUIDs with the prefix \"00000000-0000-0000-0000-0000000000\" are reserved")
        }
        guard !taken(given) else { throw .badRequest("Invalid Token: \(field) is already in use") }
        return given
    }
}

/// The fields of a token create or update request.
struct TokenFields {
    var accessorID: String?
    var secretID: String?
    var description: String?
    var policies: [ACLLink]?
    var roles: [ACLLink]?
    var identities: ([ACLServiceIdentity], [ACLNodeIdentity], [ACLTemplatedPolicy])
    var local: Bool?
    var expirationTTL: Duration?
    /// Unix nanoseconds.
    var expirationTime: Int?

    init(_ r: FieldReader) throws(DecodeError) {
        accessorID = try r.string("AccessorID")
        secretID = try r.string("SecretID")
        description = try r.string("Description")
        policies = r.has("Policies") ? try ACLJSON.decodeLinks(r, "Policies") : nil
        roles = r.has("Roles") ? try ACLJSON.decodeLinks(r, "Roles") : nil
        local = try r.bool("Local")
        identities = try ACLJSON.decodeIdentities(r, local: local ?? false)
        expirationTTL = try r.duration("ExpirationTTL")
        if let text = try r.string("ExpirationTime") {
            guard let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: text.contains(".")))
            else { throw DecodeError("ExpirationTime must be an RFC 3339 time, got \"\(text)\"") }
            expirationTime = Int(date.timeIntervalSince1970 * 1e9)
        }
    }

    /// Sets the description, links (names resolved to IDs) and identities on `token`.
    func apply(to token: inout ACLToken, in state: borrowing RegistryState) throws(CatalogError) {
        if let description { token.description = description }
        if let policies { token.policies = try ACLLinks.resolvePolicies(policies, in: state) }
        if let roles {
            token.roles = try ACLLinks.resolve(roles, kind: "role", byID: { state.aclRole(id: $0)?.id }, byName: { state.aclRole(name: $0)?.id })
        }
        (token.serviceIdentities, token.nodeIdentities, token.templatedPolicies) = identities
    }
}

/// Policy and role links given by ID or name, checked against what exists.
enum ACLLinks {
    static func resolvePolicies(_ links: [ACLLink], in state: borrowing RegistryState) throws(CatalogError) -> [ACLLink] {
        try resolve(links, kind: "policy", byID: { state.aclPolicy(id: $0)?.id }, byName: { state.aclPolicy(name: $0)?.id })
    }

    static func resolve(_ links: [ACLLink], kind: String, byID: (String) -> String?, byName: (String) -> String?) throws(CatalogError) -> [ACLLink] {
        var resolved: [ACLLink] = []
        for link in links {
            let id: String?
            if !link.id.isEmpty {
                id = byID(link.id)
                guard id != nil else { throw .badRequest("No such ACL \(kind) with ID \"\(link.id)\"") }
            } else {
                id = byName(link.name)
                guard id != nil else { throw .badRequest("No such ACL \(kind) with name \"\(link.name)\"") }
            }
            if let id, !resolved.contains(where: { $0.id == id }) { resolved.append(ACLLink(id: id)) }
        }
        return resolved
    }
}
