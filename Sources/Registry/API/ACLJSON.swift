import Crypto
import Foundation
import TrellisCore

/// Consul's JSON shapes of ACL tokens, policies and roles, both ways.
enum ACLJSON {
    /// Consul's rule for policy and role names.
    static func isValidName(_ name: String) -> Bool {
        (1...128).contains(name.utf8.count) && name.unicodeScalars.allSatisfy {
            $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_")
        }
    }

    /// Consul's rule for service names in identities.
    static func isValidServiceName(_ name: String) -> Bool {
        (1...256).contains(name.utf8.count) && name.unicodeScalars.allSatisfy {
            $0.isASCII && (CharacterSet.lowercaseLetters.contains($0) || CharacterSet.decimalDigits.contains($0) || $0 == "-" || $0 == "_")
        }
    }

    static func time(_ nanoseconds: Int) -> String {
        Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(Date(timeIntervalSince1970: Double(nanoseconds) / 1e9))
    }

    /// A content hash as Consul reports one (base64 of a digest of the fields that can change).
    static func hash(_ parts: [String]) -> String {
        Data(SHA256.hash(data: Array(parts.joined(separator: "\u{0}").utf8))).base64EncodedString()
    }

    /// 32 hex digits of a digest of `text`: the ID of a synthetic policy, as long as Consul's.
    static func hexDigest(_ text: String) -> String {
        SHA256.hash(data: Array(text.utf8)).prefix(16).map { String($0 >> 4, radix: 16) + String($0 & 0xF, radix: 16) }.joined()
    }

    // MARK: Rendering

    static func links(_ links: [ACLLink], names: (String) -> String?) -> JSON {
        .array(links.map { link in
            .object(JSONObject([("ID", .string(link.id)), ("Name", .string(names(link.id) ?? link.name))]))
        })
    }

    static func serviceIdentities(_ identities: [ACLServiceIdentity]) -> JSON {
        .array(identities.map { identity in
            var fields: [(String, JSON)] = [("ServiceName", .string(identity.serviceName))]
            if !identity.datacenters.isEmpty { fields.append(("Datacenters", .strings(identity.datacenters))) }
            return .object(JSONObject(fields))
        })
    }

    static func nodeIdentities(_ identities: [ACLNodeIdentity]) -> JSON {
        .array(identities.map { .object(JSONObject([("NodeName", .string($0.nodeName)), ("Datacenter", .string($0.datacenter))])) })
    }

    static func templatedPolicies(_ policies: [ACLTemplatedPolicy]) -> JSON {
        .array(policies.map { policy in
            var fields: [(String, JSON)] = [("TemplateName", .string(policy.templateName))]
            if policy.needsName { fields.append(("TemplateVariables", .object(JSONObject([("name", .string(policy.name))])))) }
            if !policy.datacenters.isEmpty { fields.append(("Datacenters", .strings(policy.datacenters))) }
            return .object(JSONObject(fields))
        })
    }

    /// Token fields: Consul leaves out empty lists, the auth method and a missing expiration.
    static func token(_ token: ACLToken, in state: borrowing RegistryState) -> JSON {
        var fields: [(String, JSON)] = [
            ("AccessorID", .string(token.accessorID)), ("SecretID", .string(token.secretID)),
            ("Description", .string(token.description)),
        ]
        if !token.policies.isEmpty { fields.append(("Policies", links(token.policies) { state.aclPolicy(id: $0)?.name })) }
        if !token.roles.isEmpty { fields.append(("Roles", links(token.roles) { state.aclRole(id: $0)?.name })) }
        if !token.serviceIdentities.isEmpty { fields.append(("ServiceIdentities", serviceIdentities(token.serviceIdentities))) }
        if !token.nodeIdentities.isEmpty { fields.append(("NodeIdentities", nodeIdentities(token.nodeIdentities))) }
        if !token.templatedPolicies.isEmpty { fields.append(("TemplatedPolicies", templatedPolicies(token.templatedPolicies))) }
        fields.append(("Local", .bool(token.local)))
        if !token.authMethod.isEmpty { fields.append(("AuthMethod", .string(token.authMethod))) }
        if token.expirationTime != 0 { fields.append(("ExpirationTime", .string(time(token.expirationTime)))) }
        fields += [
            ("CreateTime", .string(time(token.createTime))),
            ("Hash", .string(hash([token.description, token.local ? "local" : "global"] + token.policies.map(\.id) + token.roles.map(\.id)
                                  + token.serviceIdentities.map(\.serviceName) + token.nodeIdentities.map(\.nodeName)))),
            ("CreateIndex", .unsigned(token.createIndex)), ("ModifyIndex", .unsigned(token.modifyIndex)),
        ]
        return .object(JSONObject(fields))
    }

    static func policy(_ policy: ACLPolicy, withRules: Bool = true) -> JSON {
        var fields: [(String, JSON)] = [
            ("ID", .string(policy.id)), ("Name", .string(policy.name)), ("Description", .string(policy.description)),
        ]
        if withRules { fields.append(("Rules", .string(policy.rules))) }
        if !policy.datacenters.isEmpty { fields.append(("Datacenters", .strings(policy.datacenters))) }
        fields += [
            ("Hash", .string(hash([policy.name, policy.description, policy.rules] + policy.datacenters))),
            ("CreateIndex", .unsigned(policy.createIndex)), ("ModifyIndex", .unsigned(policy.modifyIndex)),
        ]
        return .object(JSONObject(fields))
    }

    static func role(_ role: ACLRole, in state: borrowing RegistryState) -> JSON {
        var fields: [(String, JSON)] = [
            ("ID", .string(role.id)), ("Name", .string(role.name)), ("Description", .string(role.description)),
        ]
        if !role.policies.isEmpty { fields.append(("Policies", links(role.policies) { state.aclPolicy(id: $0)?.name })) }
        if !role.serviceIdentities.isEmpty { fields.append(("ServiceIdentities", serviceIdentities(role.serviceIdentities))) }
        if !role.nodeIdentities.isEmpty { fields.append(("NodeIdentities", nodeIdentities(role.nodeIdentities))) }
        if !role.templatedPolicies.isEmpty { fields.append(("TemplatedPolicies", templatedPolicies(role.templatedPolicies))) }
        fields += [
            ("Hash", .string(hash([role.name, role.description] + role.policies.map(\.id) + role.serviceIdentities.map(\.serviceName)))),
            ("CreateIndex", .unsigned(role.createIndex)), ("ModifyIndex", .unsigned(role.modifyIndex)),
        ]
        return .object(JSONObject(fields))
    }

    // MARK: Decoding

    /// `Policies` or `Roles` links as given: by `ID`, or by `Name` (resolved by the caller).
    static func decodeLinks(_ r: FieldReader, _ field: String) throws(DecodeError) -> [ACLLink] {
        var links: [ACLLink] = []
        for item in try r.objects(field) ?? [] {
            links.append(ACLLink(id: try item.string("ID") ?? "", name: try item.string("Name") ?? ""))
        }
        return links
    }

    /// The identities of a token or role, checked as Consul checks them.
    static func decodeIdentities(_ r: FieldReader, local: Bool = false) throws(DecodeError)
        -> ([ACLServiceIdentity], [ACLNodeIdentity], [ACLTemplatedPolicy]) {
        var services: [ACLServiceIdentity] = []
        for item in try r.objects("ServiceIdentities") ?? [] {
            let identity = ACLServiceIdentity(serviceName: try item.string("ServiceName") ?? "",
                                              datacenters: try item.strings("Datacenters") ?? [])
            guard !identity.serviceName.isEmpty else { throw DecodeError("Service identity is missing the service name field on this token") }
            guard isValidServiceName(identity.serviceName) else {
                throw DecodeError("Service identity \"\(identity.serviceName)\" has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed")
            }
            if local && !identity.datacenters.isEmpty {
                throw DecodeError("Service identity \"\(identity.serviceName)\" cannot specify a list of datacenters on a local token")
            }
            if !services.contains(where: { $0.serviceName == identity.serviceName }) { services.append(identity) }
        }
        var nodes: [ACLNodeIdentity] = []
        for item in try r.objects("NodeIdentities") ?? [] {
            let identity = ACLNodeIdentity(nodeName: try item.string("NodeName") ?? "", datacenter: try item.string("Datacenter") ?? "")
            guard !identity.nodeName.isEmpty else { throw DecodeError("Node identity is missing the node name field on this token") }
            guard !identity.datacenter.isEmpty else { throw DecodeError("Node identity is missing the datacenter field on this token") }
            if !nodes.contains(identity) { nodes.append(identity) }
        }
        var templated: [ACLTemplatedPolicy] = []
        for item in try r.objects("TemplatedPolicies") ?? [] {
            var policy = ACLTemplatedPolicy(templateName: try item.string("TemplateName") ?? "",
                                            datacenters: try item.strings("Datacenters") ?? [])
            policy.name = try item.object("TemplateVariables")?.string("name") ?? ""
            guard ACLTemplatedPolicy.templates.contains(policy.templateName) else {
                throw DecodeError("no such ACL templated policy with name \"\(policy.templateName)\"")
            }
            if policy.needsName && !isValidServiceName(policy.name) {
                throw DecodeError("templated policy \"\(policy.templateName)\" needs a valid TemplateVariables.name")
            }
            templated.append(policy)
        }
        return (services, nodes, templated)
    }
}
