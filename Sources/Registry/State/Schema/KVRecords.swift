import TrellisCore

/// The `kv` table's codec. Layout 1: Consul's KV entry fields, the value in base64.
enum KVRecord {
    static let version = 1

    static func encode(_ e: KVEntry) -> [UInt8] {
        RecordLayout.encode(version: version, [
            ("Key", .string(e.key)),
            ("Value", .string(Base64.encode(e.value))),
            ("Flags", .unsigned(e.flags)),
            ("Session", .string(e.session)),
            ("LockIndex", .unsigned(e.lockIndex)),
            ("CreateIndex", .unsigned(e.createIndex)),
            ("ModifyIndex", .unsigned(e.modifyIndex)),
        ])
    }

    static func decode(_ bytes: [UInt8]) throws(RecordError) -> KVEntry {
        try RecordLayout.decode(bytes, table: .kv, newest: version) { (r, _) throws(DecodeError) in
            var e = KVEntry(key: try r.string("Key") ?? "", value: Base64.decode(try r.string("Value") ?? "") ?? [])
            e.flags = try r.flags("Flags")
            e.session = try r.string("Session") ?? ""
            e.lockIndex = try r.uint64("LockIndex") ?? 0
            e.createIndex = try r.uint64("CreateIndex") ?? 0
            e.modifyIndex = try r.uint64("ModifyIndex") ?? 0
            return e
        }
    }
}

/// The `session` table's codec. Layout 1: Consul's session fields, `LockDelay` in nanoseconds and
/// `ServiceChecks` as `{"ID": …}` objects.
enum SessionRecord {
    static let version = 1

    static func encode(_ s: Session) -> [UInt8] {
        RecordLayout.encode(version: version, [
            ("ID", .string(s.id)),
            ("Name", .string(s.name)),
            ("Node", .string(s.node)),
            ("LockDelay", .int(s.lockDelay.nanoseconds)),
            ("Behavior", .string(s.behavior.rawValue)),
            ("TTL", .string(s.ttl.map(GoDuration.format) ?? "")),
            ("NodeChecks", .strings(s.nodeChecks)),
            ("ServiceChecks", .array(s.serviceChecks.map { .object(JSONObject([("ID", .string($0))])) })),
            ("CreateIndex", .unsigned(s.createIndex)),
            ("ModifyIndex", .unsigned(s.modifyIndex)),
        ])
    }

    static func decode(_ bytes: [UInt8]) throws(RecordError) -> Session {
        try RecordLayout.decode(bytes, table: .session, newest: version) { (r, _) throws(DecodeError) in
            var s = Session(id: try r.string("ID") ?? "", node: try r.string("Node") ?? "")
            s.name = try r.string("Name") ?? ""
            s.lockDelay = .nanoseconds(Int64(try r.int("LockDelay") ?? 0))
            s.behavior = Session.Behavior(rawValue: try r.string("Behavior") ?? "") ?? .release
            s.ttl = try r.duration("TTL")
            s.nodeChecks = try r.strings("NodeChecks") ?? []
            for check in try r.objects("ServiceChecks") ?? [] { s.serviceChecks.append(try check.string("ID") ?? "") }
            s.createIndex = try r.uint64("CreateIndex") ?? 0
            s.modifyIndex = try r.uint64("ModifyIndex") ?? 0
            return s
        }
    }
}
