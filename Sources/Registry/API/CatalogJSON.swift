import TrellisCore

/// Consul's JSON shapes for catalog values on the wire (the store's are in State/Schema).
enum CatalogJSON {
    /// A node's string map, `null` when it has none, as Consul encodes an unset Go map.
    static func nodeMap(_ map: [String: String]) -> JSON { map.isEmpty ? .null : .stringMap(map) }

    static func node(_ node: Node) -> JSON {
        .object(JSONObject(nodeFields(node, metaKey: "Meta") + [
            ("CreateIndex", .int(Int64(node.createIndex))),
            ("ModifyIndex", .int(Int64(node.modifyIndex))),
        ]))
    }

    /// The node's part of a node or of a `ServiceNode`, whose metadata is `Meta` and `NodeMeta` respectively.
    private static func nodeFields(_ node: Node, metaKey: String) -> [(key: String, value: JSON)] {
        [
            ("ID", .string(node.id)),
            ("Node", .string(node.name)),
            ("Address", .string(node.address)),
            ("Datacenter", .string(node.datacenter)),
            ("TaggedAddresses", nodeMap(node.taggedAddresses)),
            (metaKey, nodeMap(node.meta)),
        ]
    }

    static func weights(_ weights: ServiceInstance.Weights) -> JSON {
        .object(JSONObject([("Passing", .int(Int64(weights.passing))), ("Warning", .int(Int64(weights.warning)))]))
    }

    static func serviceAddresses(_ addresses: [String: ServiceAddress]) -> JSON {
        .object(JSONObject(addresses.sorted { $0.key < $1.key }.map { entry in
            (entry.key, .object(JSONObject([("Address", .string(entry.value.address)),
                                            ("Port", .int(Int64(entry.value.port)))])))
        }))
    }

    static let emptyProxy: JSON = .object(JSONObject([("Mode", .string("")), ("MeshGateway", .object(JSONObject())),
                                                      ("Expose", .object(JSONObject()))]))

    /// `NodeService`: the `Service` of a health entry and the values of `/v1/catalog/node/:node`.
    static func nodeService(_ s: ServiceInstance) -> JSON {
        var object = JSONObject([
            ("Kind", .string(s.kind)),
            ("ID", .string(s.id)),
            ("Service", .string(s.name)),
            ("Tags", .strings(s.tags)),
            ("Address", .string(s.address)),
        ])
        if !s.taggedAddresses.isEmpty { object.append("TaggedAddresses", serviceAddresses(s.taggedAddresses)) }
        object.pairs += [
            ("Meta", .stringMap(s.meta)),
            ("Port", .int(Int64(s.port))),
            ("SocketPath", .string(s.socketPath)),
            ("Weights", weights(s.weights)),
            ("EnableTagOverride", .bool(s.enableTagOverride)),
            ("Proxy", s.proxy ?? emptyProxy),
            ("Connect", s.connect ?? .object(JSONObject())),
        ]
        if let locality = s.locality { object.append("Locality", locality) }
        object.pairs += [
            ("CreateIndex", .int(Int64(s.createIndex))),
            ("ModifyIndex", .int(Int64(s.modifyIndex))),
        ]
        return .object(object)
    }

    /// `AgentService`: the values of `/v1/agent/services`, and with its `ContentHash` `/v1/agent/service/:id`.
    static func agentService(_ s: ServiceInstance, datacenter: String, contentHash: String? = nil) -> JSON {
        var object = JSONObject()
        if !s.kind.isEmpty { object.append("Kind", .string(s.kind)) }
        object.pairs += [
            ("ID", .string(s.id)),
            ("Service", .string(s.name)),
            ("Tags", .strings(s.tags)),
            ("Meta", .stringMap(s.meta)),
            ("Port", .int(Int64(s.port))),
            ("Address", .string(s.address)),
        ]
        if !s.socketPath.isEmpty { object.append("SocketPath", .string(s.socketPath)) }
        if !s.taggedAddresses.isEmpty { object.append("TaggedAddresses", serviceAddresses(s.taggedAddresses)) }
        object.pairs += [
            ("Weights", weights(s.weights)),
            ("EnableTagOverride", .bool(s.enableTagOverride)),
        ]
        if let contentHash { object.append("ContentHash", .string(contentHash)) }
        if let proxy = s.proxy { object.append("Proxy", proxy) }
        if let connect = s.connect { object.append("Connect", connect) }
        if let locality = s.locality { object.append("Locality", locality) }
        object.append("Datacenter", .string(datacenter))
        return .object(object)
    }

    /// `ServiceNode`: the items of `/v1/catalog/service/:name`.
    static func catalogServiceNode(_ node: Node, _ s: ServiceInstance) -> JSON {
        .object(JSONObject(nodeFields(node, metaKey: "NodeMeta") + [
            ("ServiceKind", .string(s.kind)),
            ("ServiceID", .string(s.id)),
            ("ServiceName", .string(s.name)),
            ("ServiceTags", .strings(s.tags)),
            ("ServiceAddress", .string(s.address)),
            ("ServiceTaggedAddresses", serviceAddresses(s.taggedAddresses)),
            ("ServiceWeights", weights(s.weights)),
            ("ServiceMeta", .stringMap(s.meta)),
            ("ServicePort", .int(Int64(s.port))),
            ("ServiceSocketPath", .string(s.socketPath)),
            ("ServiceEnableTagOverride", .bool(s.enableTagOverride)),
            ("ServiceProxy", s.proxy ?? emptyProxy),
            ("ServiceConnect", s.connect ?? .object(JSONObject())),
        ] + (s.locality.map { [("ServiceLocality", $0)] } ?? []) + [
            ("CreateIndex", .int(Int64(s.createIndex))),
            ("ModifyIndex", .int(Int64(s.modifyIndex))),
        ]))
    }

    static func definition(_ d: CheckDefinition) -> JSON {
        var object = JSONObject()
        if !d.http.isEmpty {
            object.append("HTTP", .string(d.http))
            if !d.header.isEmpty {
                object.append("Header", .object(JSONObject(d.header.sorted { $0.key < $1.key }.map { ($0.key, .strings($0.value)) })))
            }
            if !d.method.isEmpty { object.append("Method", .string(d.method)) }
            if !d.body.isEmpty { object.append("Body", .string(d.body)) }
            if d.tlsSkipVerify { object.append("TLSSkipVerify", .bool(true)) }
        }
        if !d.tcp.isEmpty { object.append("TCP", .string(d.tcp)) }
        if !d.udp.isEmpty { object.append("UDP", .string(d.udp)) }
        if let interval = d.interval { object.append("Interval", .string(GoDuration.format(interval))) }
        if let timeout = d.timeout { object.append("Timeout", .string(GoDuration.format(timeout))) }
        if let after = d.deregisterCriticalServiceAfter {
            object.append("DeregisterCriticalServiceAfter", .string(GoDuration.format(after)))
        }
        return .object(object)
    }

    static func check(_ c: HealthCheck) -> JSON {
        .object(JSONObject([
            ("Node", .string(c.node)),
            ("CheckID", .string(c.checkID)),
            ("Name", .string(c.name)),
            ("Status", .string(c.status.rawValue)),
            ("Notes", .string(c.notes)),
            ("Output", .string(c.output)),
            ("ServiceID", .string(c.serviceID)),
            ("ServiceName", .string(c.serviceName)),
            ("ServiceTags", .strings(c.serviceTags)),
            ("Type", .string(Maintenance.isMaintenance(c.checkID) ? "maintenance" : c.definition.type)),
            ("Interval", .string(c.definition.interval.map(GoDuration.format) ?? "")),
            ("Timeout", .string(c.definition.timeout.map(GoDuration.format) ?? "")),
            ("ExposedPort", .int(0)),
            ("Definition", definition(c.definition)),
            ("CreateIndex", .int(Int64(c.createIndex))),
            ("ModifyIndex", .int(Int64(c.modifyIndex))),
        ]))
    }
}
