import TrellisCore

/// The `kv` table. Layout 1: Consul's KV entry fields, the value in base64.
enum KVRecord {
    static let codec = RecordCodec<KVEntry>(table: .kv, empty: { KVEntry(key: "", value: []) }, layouts: [
        RecordLayout([
            .string("Key", \.key), value, .flags("Flags", \.flags), .string("Session", \.session),
            .index("LockIndex", \.lockIndex), .index("CreateIndex", \.createIndex), .index("ModifyIndex", \.modifyIndex),
        ]),
    ])

    private static let value = RecordField<KVEntry>(name: "Value", write: { .string(Base64.encode($0.value)) }, read: { e, r throws(DecodeError) in
        e.value = Base64.decode(try r.string("Value") ?? "") ?? []
    })

    static func encode(_ entry: KVEntry) -> [UInt8] { codec.encode(entry) }
    static func decode(_ bytes: [UInt8]) throws(RecordError) -> KVEntry { try codec.decode(bytes) }
}

/// The `session` table. Layout 1: Consul's session fields, `LockDelay` in nanoseconds and
/// `ServiceChecks` as `{"ID": …}` objects.
enum SessionRecord {
    static let codec = RecordCodec<Session>(table: .session, empty: { Session(id: "", node: "") }, layouts: [
        RecordLayout([
            .string("ID", \.id), .string("Name", \.name), .string("Node", \.node), .nanoseconds("LockDelay", \.lockDelay),
            .raw("Behavior", \.behavior), .duration("TTL", \.ttl), .strings("NodeChecks", \.nodeChecks), serviceChecks,
            .index("CreateIndex", \.createIndex), .index("ModifyIndex", \.modifyIndex),
        ]),
    ])

    private static let serviceChecks = RecordField<Session>(name: "ServiceChecks", write: { s in
        .array(s.serviceChecks.map { .object(JSONObject([("ID", .string($0))])) })
    }, read: { s, r throws(DecodeError) in
        for check in try r.objects("ServiceChecks") ?? [] { s.serviceChecks.append(try check.string("ID") ?? "") }
    })

    static func encode(_ session: Session) -> [UInt8] { codec.encode(session) }
    static func decode(_ bytes: [UInt8]) throws(RecordError) -> Session { try codec.decode(bytes) }
}
