import TrellisCore

/// Whether an intention lets its source call its destination.
public enum IntentionAction: String, Sendable {
    case allow, deny
}

/// An intention (Consul's L4 form): may `sourceName` call `destinationName`? Either may be the wildcard `*`.
public struct Intention: Sendable, Equatable {
    public static let wildcard = "*"

    /// Set only for intentions created through `POST /v1/connect/intentions` (Consul's legacy IDs).
    public var id = ""
    public var description = ""
    public var sourceName = ""
    public var destinationName = ""
    public var sourceType = "consul"
    public var action = IntentionAction.allow
    public var meta: [String: String] = [:]
    /// RFC 3339 times, empty where Consul reports the zero time (intentions written by name).
    public var createdAt = ""
    public var updatedAt = ""
    public var createIndex: UInt64 = 0
    public var modifyIndex: UInt64 = 0

    public init(source: String, destination: String, action: IntentionAction) {
        sourceName = source
        destinationName = destination
        self.action = action
    }

    init() {}

    /// Consul's precedence in the default namespace: exact destination before wildcard, then exact
    /// source before wildcard (9, 8, 6, 5); higher is evaluated first.
    public var precedence: Int {
        (destinationName == Self.wildcard ? 6 : 9) - (sourceName == Self.wildcard ? 1 : 0)
    }

    /// Whether this intention applies to a connection from `source` to `destination`.
    func matches(source: String, destination: String) -> Bool {
        (sourceName == Self.wildcard || sourceName == source) && (destinationName == Self.wildcard || destinationName == destination)
    }

    /// `ALLOW default/web => default/db (ID: …)`, as Consul describes a matched intention.
    public var summary: String {
        "\(action.rawValue.uppercased()) default/\(sourceName) => default/\(destinationName) (ID: \(id))"
    }

    /// Evaluation order: precedence, then source and destination names (Consul's tie break).
    static func evaluatedBefore(_ a: Intention, _ b: Intention) -> Bool {
        if a.precedence != b.precedence { return a.precedence > b.precedence }
        if a.sourceName != b.sourceName { return a.sourceName < b.sourceName }
        return a.destinationName < b.destinationName
    }
}

/// The `intention` table, by `source\ndestination`. Layout 1.
enum IntentionRecord {
    static let codec = RecordCodec<Intention>(table: .intention, empty: { Intention() }, layouts: [
        RecordLayout([
            .string("ID", \.id), .string("Description", \.description), .string("SourceName", \.sourceName),
            .string("DestinationName", \.destinationName), .string("SourceType", \.sourceType), .raw("Action", \.action),
            .stringMap("Meta", \.meta), .string("CreatedAt", \.createdAt), .string("UpdatedAt", \.updatedAt),
            .index("CreateIndex", \.createIndex), .index("ModifyIndex", \.modifyIndex),
        ]),
    ])

    static func key(_ intention: Intention) -> String { Table.pairKey(intention.sourceName, intention.destinationName) }
    static func encode(_ intention: Intention) -> [UInt8] { codec.encode(intention) }
    static func decode(_ bytes: [UInt8]) throws(RecordError) -> Intention { try codec.decode(bytes) }
}
