import TrellisCore

/// Records that are one unsigned decimal number: the global index, watch indexes, KV tombstones.
enum IndexRecord {
    static func encode(_ index: UInt64) -> [UInt8] { Array(String(index).utf8) }
    static func decode(_ bytes: [UInt8], table: Table) throws(RecordError) -> UInt64 {
        guard let index = UInt64(String(decoding: bytes, as: UTF8.self)) else {
            throw RecordError(table, "an index must be an unsigned decimal number")
        }
        return index
    }
}

/// Records kept as the JSON document they hold: coordinates, autopilot settings, config entries.
enum JSONRecord {
    static func encode(_ document: JSON) -> [UInt8] { document.serialized() }
    static func decode(_ bytes: [UInt8], table: Table) throws(RecordError) -> JSON {
        do { return try JSON.parse(bytes) } catch { throw RecordError(table, "\(error)") }
    }
}

/// A set of strings, stored as a sorted JSON array (the config file's service IDs).
enum StringSetRecord {
    static func encode(_ set: Set<String>) -> [UInt8] { JSON.strings(set.sorted()).serialized() }
    static func decode(_ bytes: [UInt8], table: Table) throws(RecordError) -> Set<String> {
        guard let items = try JSONRecord.decode(bytes, table: table).arrayValue else {
            throw RecordError(table, "expected an array of strings")
        }
        return Set(items.compactMap(\.stringValue))
    }
}
