import TrellisCore

/// The `node` table's codec. Layout 1: Consul's node fields.
enum NodeRecord {
    static let version = 1

    static func encode(_ node: Node) -> [UInt8] {
        RecordLayout.encode(version: version, [
            ("ID", .string(node.id)),
            ("Node", .string(node.name)),
            ("Address", .string(node.address)),
            ("Datacenter", .string(node.datacenter)),
            ("TaggedAddresses", .stringMap(node.taggedAddresses)),
            ("Meta", .stringMap(node.meta)),
            ("CreateIndex", .unsigned(node.createIndex)),
            ("ModifyIndex", .unsigned(node.modifyIndex)),
        ])
    }

    static func decode(_ bytes: [UInt8]) throws(RecordError) -> Node {
        try RecordLayout.decode(bytes, table: .node, newest: version) { (r, _) throws(DecodeError) in
            var node = Node(id: try r.string("ID") ?? "", name: try r.string("Node") ?? "",
                            address: try r.string("Address") ?? "", datacenter: try r.string("Datacenter") ?? "",
                            taggedAddresses: try r.stringMap("TaggedAddresses") ?? [:], meta: try r.stringMap("Meta") ?? [:])
            node.createIndex = try r.uint64("CreateIndex") ?? 0
            node.modifyIndex = try r.uint64("ModifyIndex") ?? 0
            return node
        }
    }
}

/// The `service` table's codec. Layout 1: Consul's `NodeService` fields plus `Node`; `Proxy`,
/// `Connect` and `Locality` only when registered.
enum ServiceRecord {
    static let version = 1

    static func encode(_ s: ServiceInstance) -> [UInt8] {
        var fields: [(key: String, value: JSON)] = [
            ("Node", .string(s.node)),
            ("Kind", .string(s.kind)),
            ("ID", .string(s.id)),
            ("Service", .string(s.name)),
            ("Tags", .strings(s.tags)),
            ("Address", .string(s.address)),
            ("TaggedAddresses", .object(JSONObject(s.taggedAddresses.sorted { $0.key < $1.key }.map { entry in
                (entry.key, .object(JSONObject([("Address", .string(entry.value.address)),
                                                ("Port", .int(Int64(entry.value.port)))])))
            }))),
            ("Meta", .stringMap(s.meta)),
            ("Port", .int(Int64(s.port))),
            ("SocketPath", .string(s.socketPath)),
            ("Weights", .object(JSONObject([("Passing", .int(Int64(s.weights.passing))),
                                            ("Warning", .int(Int64(s.weights.warning)))]))),
            ("EnableTagOverride", .bool(s.enableTagOverride)),
        ]
        if let proxy = s.proxy { fields.append(("Proxy", proxy)) }
        if let connect = s.connect { fields.append(("Connect", connect)) }
        if let locality = s.locality { fields.append(("Locality", locality)) }
        fields += [("CreateIndex", .unsigned(s.createIndex)), ("ModifyIndex", .unsigned(s.modifyIndex))]
        return RecordLayout.encode(version: version, fields)
    }

    static func decode(_ bytes: [UInt8]) throws(RecordError) -> ServiceInstance {
        try RecordLayout.decode(bytes, table: .service, newest: version) { (r, _) throws(DecodeError) in
            var s = ServiceInstance(node: try r.string("Node") ?? "", id: try r.string("ID") ?? "",
                                    name: try r.string("Service") ?? "")
            s.kind = try r.string("Kind") ?? ""
            s.tags = try r.strings("Tags") ?? []
            s.address = try r.string("Address") ?? ""
            for (key, value) in (try r.object("TaggedAddresses"))?.object.pairs ?? [] {
                let entry = try FieldReader(value, context: "TaggedAddresses.\(key)")
                s.taggedAddresses[key] = ServiceAddress(address: try entry.string("Address") ?? "", port: try entry.int("Port") ?? 0)
            }
            s.meta = try r.stringMap("Meta") ?? [:]
            s.port = try r.int("Port") ?? 0
            s.socketPath = try r.string("SocketPath") ?? ""
            if let weights = try r.object("Weights") {
                s.weights = .init(passing: try weights.int("Passing") ?? 1, warning: try weights.int("Warning") ?? 1)
            }
            s.enableTagOverride = try r.bool("EnableTagOverride") ?? false
            s.proxy = r.value("Proxy")
            s.connect = r.value("Connect")
            s.locality = r.value("Locality")
            s.createIndex = try r.uint64("CreateIndex") ?? 0
            s.modifyIndex = try r.uint64("ModifyIndex") ?? 0
            return s
        }
    }
}

/// The `check` table's codec.
///
/// Layout 2: the check's fields and its whole `Definition` (how it runs, thresholds included).
/// Layout 1 (written before layouts were versioned) was Consul's wire form of a check, whose
/// `Definition` lacks `TTL`, `Args` and the thresholds: it kept them at the top level.
enum CheckRecord {
    static let version = 2

    static func encode(_ c: HealthCheck) -> [UInt8] {
        RecordLayout.encode(version: version, [
            ("Node", .string(c.node)),
            ("CheckID", .string(c.checkID)),
            ("Name", .string(c.name)),
            ("Status", .string(c.status.rawValue)),
            ("Notes", .string(c.notes)),
            ("Output", .string(c.output)),
            ("ServiceID", .string(c.serviceID)),
            ("ServiceName", .string(c.serviceName)),
            ("ServiceTags", .strings(c.serviceTags)),
            ("Definition", definition(c.definition)),
            ("CreateIndex", .unsigned(c.createIndex)),
            ("ModifyIndex", .unsigned(c.modifyIndex)),
        ])
    }

    static func decode(_ bytes: [UInt8]) throws(RecordError) -> HealthCheck {
        try RecordLayout.decode(bytes, table: .check, newest: version) { (r, version) throws(DecodeError) in
            var check = HealthCheck(node: try r.string("Node") ?? "", checkID: try r.string("CheckID") ?? "",
                                    name: try r.string("Name") ?? "")
            check.status = HealthStatus(rawValue: try r.string("Status") ?? "") ?? .critical
            check.notes = try r.string("Notes") ?? ""
            check.output = try r.string("Output") ?? ""
            check.serviceID = try r.string("ServiceID") ?? ""
            check.serviceName = try r.string("ServiceName") ?? ""
            check.serviceTags = try r.strings("ServiceTags") ?? []
            // Layout 1 kept TTL, Args and the thresholds beside the definition.
            check.definition = try definition(try r.object("Definition") ?? FieldReader(JSONObject()), runsFrom: version == 1 ? r : nil)
            check.createIndex = try r.uint64("CreateIndex") ?? 0
            check.modifyIndex = try r.uint64("ModifyIndex") ?? 0
            return check
        }
    }

    private static func definition(_ d: CheckDefinition) -> JSON {
        var fields: [(key: String, value: JSON)] = [
            ("HTTP", .string(d.http)),
            ("Method", .string(d.method)),
            ("Header", .object(JSONObject(d.header.sorted { $0.key < $1.key }.map { ($0.key, .strings($0.value)) }))),
            ("Body", .string(d.body)),
            ("TLSSkipVerify", .bool(d.tlsSkipVerify)),
            ("TCP", .string(d.tcp)),
            ("UDP", .string(d.udp)),
            ("Args", .strings(d.args)),
        ]
        for (name, duration) in [("TTL", d.ttl), ("Interval", d.interval), ("Timeout", d.timeout),
                                 ("DeregisterCriticalServiceAfter", d.deregisterCriticalServiceAfter)] {
            if let duration { fields.append((name, .string(GoDuration.format(duration)))) }
        }
        fields += [
            ("SuccessBeforePassing", .int(Int64(d.successBeforePassing))),
            ("FailuresBeforeWarning", .int(Int64(d.failuresBeforeWarning))),
            ("FailuresBeforeCritical", .int(Int64(d.failuresBeforeCritical))),
        ]
        return .object(JSONObject(fields))
    }

    /// A stored definition; with `runsFrom`, TTL, Args and thresholds are read from that object instead.
    private static func definition(_ r: FieldReader, runsFrom outer: FieldReader?) throws(DecodeError) -> CheckDefinition {
        var d = CheckDefinition()
        d.http = try r.string("HTTP") ?? ""
        d.method = try r.string("Method") ?? ""
        for (key, value) in (try r.object("Header"))?.object.pairs ?? [] {
            d.header[key] = value.arrayValue?.compactMap(\.stringValue) ?? []
        }
        d.body = try r.string("Body") ?? ""
        d.tlsSkipVerify = try r.bool("TLSSkipVerify") ?? false
        d.tcp = try r.string("TCP") ?? ""
        d.udp = try r.string("UDP") ?? ""
        d.interval = try r.duration("Interval")
        d.timeout = try r.duration("Timeout")
        d.deregisterCriticalServiceAfter = try r.duration("DeregisterCriticalServiceAfter")
        let runs = outer ?? r
        d.args = try runs.strings("Args") ?? []
        d.ttl = try runs.duration("TTL")
        d.successBeforePassing = try runs.int("SuccessBeforePassing") ?? 0
        d.failuresBeforeWarning = try runs.int("FailuresBeforeWarning") ?? 0
        d.failuresBeforeCritical = try runs.int("FailuresBeforeCritical") ?? 0
        return d
    }
}
