import TrellisCore

/// A stored record that cannot be read.
public struct RecordError: Error, CustomStringConvertible, Sendable {
    public let table: Table
    public let message: String

    init(_ table: Table, _ message: String) {
        self.table = table
        self.message = message
    }

    public var description: String { "stored \(table.rawValue) record: \(message)" }
}

/// The layout of records that are JSON objects.
///
/// Each table has a codec (`NodeRecord`, `ServiceRecord`, …) that names every field it writes, so
/// the on-disk format is what the codec says and no request decoder shapes it. Records carry
/// `RecordVersion`, the version of their codec's layout; a codec that changes its layout raises
/// the version and keeps reading the older ones. Records written before layouts carried a version
/// are version 1.
enum RecordLayout {
    static let versionField = "RecordVersion"

    /// `fields` as a record of layout `version`.
    static func encode(version: Int, _ fields: [(key: String, value: JSON)]) -> [UInt8] {
        JSON.object(JSONObject([(versionField, .int(Int64(version)))] + fields)).serialized()
    }

    /// Reads a record with `read`, given its fields and layout version; refuses versions newer than `newest`.
    static func decode<Record>(_ bytes: [UInt8], table: Table, newest: Int,
                               _ read: (FieldReader, Int) throws(DecodeError) -> Record) throws(RecordError) -> Record {
        let fields: FieldReader, version: Int
        do {
            fields = try FieldReader(try JSON.parse(bytes), context: table.rawValue)
            version = try fields.int(versionField) ?? 1
        } catch {
            throw RecordError(table, "\(error)")
        }
        guard (1...newest).contains(version) else {
            throw RecordError(table, "layout version \(version) is newer than this registry reads (up to \(newest))")
        }
        do { return try read(fields, version) } catch { throw RecordError(table, error.message) }
    }
}

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
