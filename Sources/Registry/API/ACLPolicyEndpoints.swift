import NIOCore
import TrellisCore
import TrellisHTTP

/// `/v1/acl/policy*`, `/v1/acl/role*`, `/v1/acl/auth-method*`, `/v1/acl/binding-rule*`: Consul's
/// shapes and messages. Auth methods and binding rules are kept and served; logging in through
/// them is not offered (`/v1/acl/login` says so).
extension ConsulAPI {
    /// `GET /v1/acl/policies`: policies without their rules, as Consul lists them.
    func aclPolicyList(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = aclDisabled(context) ?? refusal(context, .acl, "", .read) { return refused }
        return blockingJSON(context, key: WatchKey.acl) { state in .array(state.aclPolicies.map { ACLJSON.policy($0, withRules: false) }) }
    }

    /// `PUT /v1/acl/policy`, and `GET|PUT|DELETE /v1/acl/policy/:id`, `GET /v1/acl/policy/name/:name`.
    func aclPolicy(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        aclRecord(context, kind: "policy", idsAreUUIDs: true,
                  byID: { state, id in state.aclPolicy(id: id).map { ACLJSON.policy($0) } },
                  byName: { state, name in state.aclPolicy(name: name).map { ACLJSON.policy($0) } },
                  upsert: { body, id, state throws(CatalogError) in
                      let policy = try Self.policy(from: body, id: id, in: state)
                      state.putACLPolicy(policy)
                      return ACLJSON.policy(policy)
                  },
                  remove: { id, state throws(CatalogError) in
                      if let builtin = ACLPolicy.builtin.first(where: { $0.id == id }) {
                          throw .badRequest("Delete operation not permitted on the builtin \(builtin.name) policy")
                      }
                      state.deleteACLPolicy(id)
                  })
    }

    /// One kind of ACL record at `/v1/acl/<kind>` (create) and `/v1/acl/<kind>/:id`: `GET` needs
    /// `acl:read` and finds the record by ID (or by name under `name/`), `PUT` and `DELETE` need
    /// `acl:write`; `upsert` checks, stores and answers the record, `remove` deletes it.
    private func aclRecord(_ context: Context, kind: String, idsAreUUIDs: Bool,
                           byID: (borrowing RegistryState, String) -> JSON?,
                           byName: ((borrowing RegistryState, String) -> JSON?)? = nil,
                           upsert: @escaping @Sendable (FieldReader, String, inout RegistryState) throws(CatalogError) -> JSON,
                           remove: @escaping @Sendable (String, inout RegistryState) throws(CatalogError) -> Void) -> EventLoopFuture<HTTPResponse> {
        if let disabled = aclDisabled(context) { return disabled }
        let id = context.rest
        switch context.request.method {
        case .GET:
            if let refused = refusal(context, .acl, "", .read) { return refused }
            let missing = HTTPResponse.text(.notFound, "ACL \(kind) not found")
            if let byName, id.hasPrefix("name/") {
                let name = String(id.dropFirst("name/".count))
                return aclRead(context, missing: missing) { byName($0, name) }
            }
            if idsAreUUIDs && !Self.isUUID(id) { return badRequest("Invalid \(kind) ID: \"\(id)\" is not a UUID", context) }
            return aclRead(context, missing: missing) { byID($0, id) }
        case .PUT:
            if let refused = refusal(context, .acl, "", .write) { return refused }
            let body: FieldReader
            do { body = try decodeBody(context) } catch { return decodeFailed(error, context) }
            return write(context, { (state: inout RegistryState) throws(CatalogError) -> JSON in
                try upsert(body, id, &state)
            }, render: { .json($0.serialized()) })
        case .DELETE:
            if let refused = refusal(context, .acl, "", .write) { return refused }
            return write(context, { (state: inout RegistryState) throws(CatalogError) -> Bool in
                try remove(id, &state)
                return true
            }, render: { Self.boolResponse($0) })
        default:
            return immediate(.text(.methodNotAllowed, "method \(context.request.method.rawValue) not allowed"), context)
        }
    }

    /// A policy from a create (`id` empty) or update request, checked as Consul checks it.
    private static func policy(from r: FieldReader, id pathID: String, in state: borrowing RegistryState) throws(CatalogError) -> ACLPolicy {
        var policy = ACLPolicy()
        do {
            policy.id = try r.string("ID") ?? ""
            policy.name = try r.string("Name") ?? ""
            policy.description = try r.string("Description") ?? ""
            policy.rules = try r.string("Rules") ?? ""
            policy.datacenters = try r.strings("Datacenters") ?? []
        } catch {
            throw .badRequest("Request decode failed: \(error.message)")
        }
        if !pathID.isEmpty {
            guard policy.id.isEmpty || policy.id == pathID else { throw .badRequest("Policy ID in URL and payload do not match") }
            policy.id = pathID
        }
        guard !policy.name.isEmpty else { throw .badRequest("Invalid Policy: no Name is set") }
        guard ACLJSON.isValidName(policy.name) else { throw .badRequest("Invalid Policy: invalid Name") }
        if let other = state.aclPolicy(name: policy.name), other.id != policy.id {
            throw .badRequest("Invalid Policy: A Policy with Name \"\(policy.name)\" already exists")
        }
        do {
            _ = try ACLRules(parsing: policy.rules)
        } catch {
            throw .badRequest("Invalid Policy: failed to parse rules: \(error)")
        }
        if policy.id.isEmpty {
            policy.id = newUUID()
            policy.createIndex = state.writeIndex
        } else {
            guard let existing = state.aclPolicy(id: policy.id) else { throw .badRequest("Cannot find policy \(policy.id)") }
            if ACLPolicy.builtin.contains(where: { $0.id == policy.id }) && existing.rules != policy.rules {
                throw .badRequest("Changing the Rules for the builtin \(existing.name) policy is not permitted")
            }
            policy.createIndex = existing.createIndex
        }
        policy.modifyIndex = state.writeIndex
        return policy
    }

    /// `GET /v1/acl/roles` with `?policy=`.
    func aclRoleList(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = aclDisabled(context) ?? refusal(context, .acl, "", .read) { return refused }
        let policy = context.request.query["policy"] ?? ""
        return blockingJSON(context, key: WatchKey.acl) { state in
            .array(state.aclRoles.filter { policy.isEmpty || $0.policies.contains { $0.id == policy } }.map { ACLJSON.role($0, in: state) })
        }
    }

    /// `PUT /v1/acl/role`, and `GET|PUT|DELETE /v1/acl/role/:id`, `GET /v1/acl/role/name/:name`.
    func aclRole(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        aclRecord(context, kind: "role", idsAreUUIDs: true,
                  byID: { state, id in state.aclRole(id: id).map { ACLJSON.role($0, in: state) } },
                  byName: { state, name in state.aclRole(name: name).map { ACLJSON.role($0, in: state) } },
                  upsert: { body, id, state throws(CatalogError) in
                      let role = try Self.role(from: body, id: id, in: state)
                      state.putACLRole(role)
                      return ACLJSON.role(role, in: state)
                  },
                  remove: { id, state throws(CatalogError) in state.deleteACLRole(id) })
    }

    private static func role(from r: FieldReader, id pathID: String, in state: borrowing RegistryState) throws(CatalogError) -> ACLRole {
        var role = ACLRole()
        let links: [ACLLink]
        do {
            role.id = try r.string("ID") ?? ""
            role.name = try r.string("Name") ?? ""
            role.description = try r.string("Description") ?? ""
            links = try ACLJSON.decodeLinks(r, "Policies")
            (role.serviceIdentities, role.nodeIdentities, role.templatedPolicies) = try ACLJSON.decodeIdentities(r)
        } catch {
            throw .badRequest("Request decode failed: \(error.message)")
        }
        if !pathID.isEmpty {
            guard role.id.isEmpty || role.id == pathID else { throw .badRequest("Role ID in URL and payload do not match") }
            role.id = pathID
        }
        guard !role.name.isEmpty else { throw .badRequest("Invalid Role: no Name is set") }
        guard ACLJSON.isValidName(role.name) else { throw .badRequest("Invalid Role: invalid Name") }
        if let other = state.aclRole(name: role.name), other.id != role.id {
            throw .badRequest("Invalid Role: A Role with Name \"\(role.name)\" already exists")
        }
        role.policies = try ACLLinks.resolvePolicies(links, in: state)
        if role.id.isEmpty {
            role.id = newUUID()
            role.createIndex = state.writeIndex
        } else {
            guard let existing = state.aclRole(id: role.id) else { throw .badRequest("Cannot find role \(role.id)") }
            role.createIndex = existing.createIndex
        }
        role.modifyIndex = state.writeIndex
        return role
    }

    // MARK: Auth methods and binding rules

    /// Consul's auth method types.
    private static let authMethodTypes: Set<String> = ["kubernetes", "jwt", "oidc", "aws-iam"]
    private static let bindTypes: Set<String> = ["service", "node", "role", "policy", "templated-policy"]

    func aclAuthMethodList(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = aclDisabled(context) ?? refusal(context, .acl, "", .read) { return refused }
        return blockingJSON(context, key: WatchKey.acl) { state in
            .array(state.aclAuthMethods.map { method in
                .object(JSONObject(method.pairs.filter { $0.key != "Config" }))
            })
        }
    }

    /// `PUT /v1/acl/auth-method`, `GET|PUT|DELETE /v1/acl/auth-method/:name`.
    func aclAuthMethod(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        aclRecord(context, kind: "auth method", idsAreUUIDs: false,
                  byID: { state, name in state.aclAuthMethod(name: name).map(JSON.object) },
                  upsert: { body, pathName, state throws(CatalogError) in
                      let (name, method) = try Self.authMethod(from: body, name: pathName, in: state)
                      state.putACLAuthMethod(name: name, method)
                      return .object(method)
                  },
                  remove: { name, state throws(CatalogError) in state.deleteACLAuthMethod(name: name) })
    }

    /// An auth method from a create (`pathName` empty) or update request, kept as given.
    private static func authMethod(from body: FieldReader, name pathName: String,
                                   in state: borrowing RegistryState) throws(CatalogError) -> (String, JSONObject) {
        let name = (try? body.string("Name")) ?? nil ?? pathName
        guard !name.isEmpty, pathName.isEmpty || name == pathName else {
            throw .badRequest(name.isEmpty ? "Invalid Auth Method: no Name is set" : "Auth method name in URL and payload do not match")
        }
        guard ACLJSON.isValidName(name) else { throw .badRequest("Invalid Auth Method: invalid Name") }
        guard let type = try? body.string("Type"), authMethodTypes.contains(type) else {
            throw .badRequest("Invalid Auth Method: Type should be one of: \(authMethodTypes.sorted().joined(separator: ", "))")
        }
        let existing = state.aclAuthMethod(name: name)
        if let existing, existing.field("Type")?.stringValue != type { throw .badRequest("Cannot change type of auth method \(name)") }
        let index = state.writeIndex
        return (name, JSONObject([
            ("Name", .string(name)), ("Type", .string(type)),
            ("DisplayName", body.value("DisplayName") ?? .string("")), ("Description", body.value("Description") ?? .string("")),
            ("MaxTokenTTL", body.value("MaxTokenTTL") ?? .string("0s")), ("TokenLocality", body.value("TokenLocality") ?? .string("")),
            ("Config", body.value("Config") ?? .object(JSONObject())),
            ("CreateIndex", existing?.field("CreateIndex") ?? .unsigned(index)), ("ModifyIndex", .unsigned(index)),
        ]))
    }

    func aclBindingRuleList(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = aclDisabled(context) ?? refusal(context, .acl, "", .read) { return refused }
        let method = context.request.query["authmethod"] ?? ""
        return blockingJSON(context, key: WatchKey.acl) { state in
            .array(state.aclBindingRules.filter { method.isEmpty || $0.field("AuthMethod")?.stringValue == method }.map(JSON.object))
        }
    }

    /// `PUT /v1/acl/binding-rule`, `GET|PUT|DELETE /v1/acl/binding-rule/:id`.
    func aclBindingRule(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        aclRecord(context, kind: "binding rule", idsAreUUIDs: false,
                  byID: { state, id in state.aclBindingRule(id: id).map(JSON.object) },
                  upsert: { body, pathID, state throws(CatalogError) in
                      let rule = try Self.bindingRule(from: body, id: pathID, in: state)
                      state.putACLBindingRule(id: rule.field("ID")?.stringValue ?? "", rule)
                      return .object(rule)
                  },
                  remove: { id, state throws(CatalogError) in state.deleteACLBindingRule(id: id) })
    }

    /// A binding rule from a create (`pathID` empty) or update request, for an auth method that exists.
    private static func bindingRule(from body: FieldReader, id pathID: String, in state: borrowing RegistryState) throws(CatalogError) -> JSONObject {
        let method = (try? body.string("AuthMethod")) ?? nil ?? ""
        guard state.aclAuthMethod(name: method) != nil else { throw .badRequest("Invalid Binding Rule: unknown auth method \"\(method)\"") }
        guard let bindType = try? body.string("BindType"), bindTypes.contains(bindType) else {
            throw .badRequest("Invalid Binding Rule: unknown BindType")
        }
        guard let bindName = try? body.string("BindName"), !bindName.isEmpty else {
            throw .badRequest("Invalid Binding Rule: no BindName is set")
        }
        let existing = pathID.isEmpty ? nil : state.aclBindingRule(id: pathID)
        if !pathID.isEmpty && existing == nil { throw .badRequest("Cannot find binding rule \(pathID)") }
        let index = state.writeIndex
        return JSONObject([
            ("ID", .string(pathID.isEmpty ? newUUID() : pathID)), ("Description", body.value("Description") ?? .string("")),
            ("AuthMethod", .string(method)), ("Selector", body.value("Selector") ?? .string("")), ("BindType", .string(bindType)),
            ("BindName", .string(bindName)),
            ("CreateIndex", existing?.field("CreateIndex") ?? .unsigned(index)), ("ModifyIndex", .unsigned(index)),
        ])
    }

    // MARK: Templated policies

    /// `GET /v1/acl/templated-policies`: every template by name.
    func aclTemplatedPolicyList(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = aclDisabled(context) ?? refusal(context, .acl, "", .read) { return refused }
        let all = JSONObject(ACLTemplatedPolicy.templates.map { ($0, Self.templateJSON($0)) })
        return immediate(json(.object(all), context), context)
    }

    /// `GET /v1/acl/templated-policy/name/:name` and `POST /v1/acl/templated-policy/preview/:name`.
    func aclTemplatedPolicy(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = aclDisabled(context) ?? refusal(context, .acl, "", .read) { return refused }
        let preview = context.rest.hasPrefix("preview/")
        let name = String(context.rest.dropFirst(preview ? "preview/".count : "name/".count))
        guard (preview ? context.request.method == .POST : context.request.method == .GET) && (preview || context.rest.hasPrefix("name/")) else {
            return immediate(.text(.notFound, "404 page not found"), context)
        }
        guard ACLTemplatedPolicy.templates.contains(name) else {
            return immediate(.text(.notFound, "no such ACL templated policy with name \"\(name)\""), context)
        }
        guard preview else { return immediate(json(Self.templateJSON(name), context), context) }
        var template = ACLTemplatedPolicy(templateName: name)
        do {
            template.name = context.request.bodyBytes.isEmpty ? "" : try decodeBody(context).string("Name") ?? ""
        } catch { return decodeFailed(error, context) }
        if template.needsName && !ACLJSON.isValidServiceName(template.name) {
            return badRequest("templated policy \"\(name)\" needs a valid Name", context)
        }
        var policy = ACLPolicy()
        policy.rules = template.rules(datacenter: identity.datacenter) ?? ""
        policy.id = ACLJSON.hexDigest(policy.rules)
        policy.name = "synthetic-policy-" + policy.id
        policy.description = "synthetic policy generated from templated policy: \(name)"
        return immediate(json(ACLJSON.policy(policy), context), context)
    }

    private static func templateJSON(_ name: String) -> JSON {
        let template = ACLTemplatedPolicy(templateName: name, name: "{{.Name}}")
        let schema = template.needsName
            ? #"{"type":"object","properties":{"name":{"type":"string","minLength":1}},"required":["name"]}"# : ""
        return .object(JSONObject([
            ("TemplateName", .string(name)), ("Schema", .string(schema)),
            ("Template", .string(template.rules(datacenter: "{{.Datacenter}}") ?? "")),
            ("Description", .string(ACLTemplatedPolicy.descriptions[name] ?? "")),
        ]))
    }

    /// `POST /v1/acl/login`: this registry verifies no external credentials, so every login is refused.
    func aclLogin(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let disabled = aclDisabled(context) { return disabled }
        let method: String
        do { method = try decodeBody(context).string("AuthMethod") ?? "" } catch { return decodeFailed(error, context) }
        let known = catalog.read { $0.aclAuthMethod(name: method) != nil }
        guard known else { return immediate(.text(.forbidden, "ACL not found"), context) }
        return badRequest("Login through auth method \"\(method)\" is not available: this registry does not verify external credentials", context)
    }
}
