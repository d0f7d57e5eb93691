import TrellisCore

/// One key of the KV store, as Consul models it.
public struct KVEntry: Sendable, Equatable {
    public var key: String
    public var value: [UInt8]
    public var flags: UInt64 = 0
    public var createIndex: UInt64 = 0
    public var modifyIndex: UInt64 = 0
    public var lockIndex: UInt64 = 0
    /// The session holding the key's lock, empty when unlocked.
    public var session = ""

    public init(key: String, value: [UInt8], flags: UInt64 = 0) {
        self.key = key
        self.value = value
        self.flags = flags
    }
}

/// A session: a lease that holds KV locks until it is destroyed, its TTL lapses or a linked check fails.
public struct Session: Sendable, Equatable {
    public enum Behavior: String, Sendable { case release, delete }

    public var id: String
    public var name = ""
    public var node: String
    public var nodeChecks: [String] = []
    public var serviceChecks: [String] = []
    public var lockDelay: Duration = .seconds(15)
    public var behavior = Behavior.release
    public var ttl: Duration?
    public var createIndex: UInt64 = 0
    public var modifyIndex: UInt64 = 0

    public init(id: String, node: String) {
        self.id = id
        self.node = node
    }

    /// Every check whose failure invalidates the session.
    public var checkIDs: [String] { nodeChecks + serviceChecks }
}

/// Consul's JSON for KV entries and sessions on the wire (the store's form is `KVRecord`/`SessionRecord`).
enum KVJSON {
    static func entry(_ e: KVEntry, includeValue: Bool = true) -> JSON {
        var object = JSONObject([
            ("LockIndex", .int(Int64(e.lockIndex))),
            ("Key", .string(e.key)),
            ("Flags", .unsigned(e.flags)),
            ("Value", includeValue && !e.value.isEmpty ? .string(Base64.encode(e.value)) : .null),
        ])
        if !e.session.isEmpty { object.append("Session", .string(e.session)) }
        object.append("CreateIndex", .int(Int64(e.createIndex)))
        object.append("ModifyIndex", .int(Int64(e.modifyIndex)))
        return .object(object)
    }

    static func session(_ s: Session) -> JSON {
        .object(JSONObject([
            ("ID", .string(s.id)),
            ("Name", .string(s.name)),
            ("Node", .string(s.node)),
            ("LockDelay", .int(s.lockDelay.nanoseconds)),
            ("Behavior", .string(s.behavior.rawValue)),
            ("TTL", .string(s.ttl.map(GoDuration.format) ?? "")),
            ("NodeChecks", .strings(s.nodeChecks)),
            ("ServiceChecks", s.serviceChecks.isEmpty ? .null
                : .array(s.serviceChecks.map { .object(JSONObject([("ID", .string($0)), ("Namespace", .string(""))])) })),
            ("CreateIndex", .int(Int64(s.createIndex))),
            ("ModifyIndex", .int(Int64(s.modifyIndex))),
        ]))
    }
}
