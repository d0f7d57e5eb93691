import TrellisCore

/// The `node` table. Layout 1: Consul's node fields.
enum NodeRecord {
    static let codec = RecordCodec<Node>(table: .node, empty: { Node(id: "", name: "", address: "", datacenter: "") }, layouts: [
        RecordLayout([
            .string("ID", \.id), .string("Node", \.name), .string("Address", \.address), .string("Datacenter", \.datacenter),
            .stringMap("TaggedAddresses", \.taggedAddresses), .stringMap("Meta", \.meta),
            .index("CreateIndex", \.createIndex), .index("ModifyIndex", \.modifyIndex),
        ]),
    ])

    static func encode(_ node: Node) -> [UInt8] { codec.encode(node) }
    static func decode(_ bytes: [UInt8]) throws(RecordError) -> Node { try codec.decode(bytes) }
}

/// The `service` table. Layout 1: Consul's `NodeService` fields plus `Node`; `Proxy`, `Connect` and
/// `Locality` only when registered.
enum ServiceRecord {
    static let codec = RecordCodec<ServiceInstance>(table: .service, empty: { ServiceInstance(node: "", id: "", name: "") }, layouts: [
        RecordLayout([
            .string("Node", \.node), .string("Kind", \.kind), .string("ID", \.id), .string("Service", \.name),
            .strings("Tags", \.tags), .string("Address", \.address), taggedAddresses, .stringMap("Meta", \.meta),
            .int("Port", \.port), .string("SocketPath", \.socketPath),
            .nested("Weights", \.weights, RecordLayout([.int("Passing", \.passing), .int("Warning", \.warning)])),
            .bool("EnableTagOverride", \.enableTagOverride),
            .document("Proxy", \.proxy), .document("Connect", \.connect), .document("Locality", \.locality),
            .index("CreateIndex", \.createIndex), .index("ModifyIndex", \.modifyIndex),
        ]),
    ])

    /// `{"lan": {"Address": …, "Port": …}, …}`.
    private static let taggedAddresses = RecordField<ServiceInstance>(name: "TaggedAddresses", write: { s in
        .object(JSONObject(s.taggedAddresses.sorted { $0.key < $1.key }.map { entry in
            (entry.key, .object(JSONObject([("Address", .string(entry.value.address)), ("Port", .int(Int64(entry.value.port)))])))
        }))
    }, read: { s, r throws(DecodeError) in
        for (key, value) in (try r.object("TaggedAddresses"))?.object.pairs ?? [] {
            let entry = try FieldReader(value, context: "TaggedAddresses.\(key)")
            s.taggedAddresses[key] = ServiceAddress(address: try entry.string("Address") ?? "", port: try entry.int("Port") ?? 0)
        }
    })

    static func encode(_ service: ServiceInstance) -> [UInt8] { codec.encode(service) }
    static func decode(_ bytes: [UInt8]) throws(RecordError) -> ServiceInstance { try codec.decode(bytes) }
}

/// The `check` table.
///
/// Layout 2: the check's fields and its whole `Definition` (how it runs, thresholds included).
/// Layout 1 (written before layouts were versioned) was Consul's wire form of a check, whose
/// `Definition` lacks `TTL`, `Args` and the thresholds: it kept them at the top level.
enum CheckRecord {
    private static let identity: [RecordField<HealthCheck>] = [
        .string("Node", \.node), .string("CheckID", \.checkID), .string("Name", \.name), .raw("Status", \.status),
        .string("Notes", \.notes), .string("Output", \.output), .string("ServiceID", \.serviceID),
        .string("ServiceName", \.serviceName), .strings("ServiceTags", \.serviceTags),
    ]
    private static let indexes: [RecordField<HealthCheck>] = [.index("CreateIndex", \.createIndex), .index("ModifyIndex", \.modifyIndex)]

    /// How a check runs: the probe and its timing, in both layouts.
    private static let probe: [RecordField<CheckDefinition>] = [
        .string("HTTP", \.http), .string("Method", \.method), header, .string("Body", \.body), .bool("TLSSkipVerify", \.tlsSkipVerify),
        .string("TCP", \.tcp), .string("UDP", \.udp), .duration("Interval", \.interval), .duration("Timeout", \.timeout),
        .duration("DeregisterCriticalServiceAfter", \.deregisterCriticalServiceAfter),
    ]
    /// What layout 1 kept beside the definition, and layout 2 keeps in it.
    private static let runs: [RecordField<CheckDefinition>] = [
        .strings("Args", \.args), .duration("TTL", \.ttl), .int("SuccessBeforePassing", \.successBeforePassing),
        .int("FailuresBeforeWarning", \.failuresBeforeWarning), .int("FailuresBeforeCritical", \.failuresBeforeCritical),
    ]

    private static let header = RecordField<CheckDefinition>(name: "Header", write: { d in
        .object(JSONObject(d.header.sorted { $0.key < $1.key }.map { ($0.key, .strings($0.value)) }))
    }, read: { d, r throws(DecodeError) in
        for (key, value) in (try r.object("Header"))?.object.pairs ?? [] {
            d.header[key] = value.arrayValue?.compactMap(\.stringValue) ?? []
        }
    })

    static let codec = RecordCodec<HealthCheck>(table: .check, empty: { HealthCheck(node: "", checkID: "", name: "") }, layouts: [
        RecordLayout(identity + [.nested("Definition", \.definition, RecordLayout(probe))]
            + runs.map { field in
                RecordField(name: field.name, write: { field.write($0.definition) }, read: { check, r throws(DecodeError) in
                    try field.read(&check.definition, r)
                })
            } + indexes),
        RecordLayout(identity + [.nested("Definition", \.definition, RecordLayout(probe + runs))] + indexes),
    ])

    static func encode(_ check: HealthCheck) -> [UInt8] { codec.encode(check) }
    static func decode(_ bytes: [UInt8]) throws(RecordError) -> HealthCheck { try codec.decode(bytes) }
}
