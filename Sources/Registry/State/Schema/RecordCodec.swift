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

/// One field of a record layout: its name in the stored JSON object, and how it is written from
/// and read into the record. A field that is absent when read leaves the record's value as it was.
struct RecordField<Record>: Sendable {
    let name: String
    /// The stored value; nil leaves the field out.
    let write: @Sendable (Record) -> JSON?
    let read: @Sendable (inout Record, FieldReader) throws(DecodeError) -> Void
}

/// A layout of records: every field, in the order it is written, declared once for both directions.
struct RecordLayout<Record>: Sendable {
    let fields: [RecordField<Record>]

    init(_ fields: [RecordField<Record>]) { self.fields = fields }

    func fields(of record: Record) -> [(key: String, value: JSON)] {
        fields.compactMap { field in field.write(record).map { (field.name, $0) } }
    }

    func read(into record: inout Record, from reader: FieldReader) throws(DecodeError) {
        for field in fields { try field.read(&record, reader) }
    }
}

/// A table's storage codec: records are JSON objects of the newest layout plus `RecordVersion`;
/// older layouts stay readable.
///
/// Each table declares its layouts in its own file (`NodeRecord`, `ServiceRecord`, …), so the
/// on-disk format is what those declarations say and no request decoder shapes it. A table that
/// changes its layout adds a version and keeps the older ones for reading. Records written
/// before layouts carried a version are version 1.
struct RecordCodec<Record>: Sendable {
    static var versionField: String { "RecordVersion" }

    let table: Table
    /// What a record is before its fields are read.
    let empty: @Sendable () -> Record
    /// Every layout, version 1 first; the last is written.
    let layouts: [RecordLayout<Record>]

    func encode(_ record: Record) -> [UInt8] {
        JSON.object(JSONObject([(Self.versionField, .int(Int64(layouts.count)))] + layouts[layouts.count - 1].fields(of: record)))
            .serialized()
    }

    func decode(_ bytes: [UInt8]) throws(RecordError) -> Record {
        var record = empty()
        do {
            let reader = try FieldReader(try JSON.parse(bytes), context: table.rawValue)
            let version = try reader.int(Self.versionField) ?? 1
            guard (1...layouts.count).contains(version) else {
                throw RecordError(table, "layout version \(version) is newer than this registry reads (up to \(layouts.count))")
            }
            try layouts[version - 1].read(into: &record, from: reader)
        } catch let error as RecordError {
            throw error
        } catch let error as DecodeError {
            throw RecordError(table, error.message)
        } catch {
            throw RecordError(table, "\(error)")
        }
        return record
    }
}

// MARK: Field kinds

extension RecordField {
    static func string(_ name: String, _ path: WritableKeyPath<Record, String> & Sendable) -> Self {
        Self(name: name, write: { .string($0[keyPath: path]) }, read: { record, r throws(DecodeError) in
            if let value = try r.string(name) { record[keyPath: path] = value }
        })
    }

    static func strings(_ name: String, _ path: WritableKeyPath<Record, [String]> & Sendable) -> Self {
        Self(name: name, write: { .strings($0[keyPath: path]) }, read: { record, r throws(DecodeError) in
            if let value = try r.strings(name) { record[keyPath: path] = value }
        })
    }

    static func stringMap(_ name: String, _ path: WritableKeyPath<Record, [String: String]> & Sendable) -> Self {
        Self(name: name, write: { .stringMap($0[keyPath: path]) }, read: { record, r throws(DecodeError) in
            if let value = try r.stringMap(name) { record[keyPath: path] = value }
        })
    }

    static func int(_ name: String, _ path: WritableKeyPath<Record, Int> & Sendable) -> Self {
        Self(name: name, write: { .int(Int64($0[keyPath: path])) }, read: { record, r throws(DecodeError) in
            if let value = try r.int(name) { record[keyPath: path] = value }
        })
    }

    static func index(_ name: String, _ path: WritableKeyPath<Record, UInt64> & Sendable) -> Self {
        Self(name: name, write: { .unsigned($0[keyPath: path]) }, read: { record, r throws(DecodeError) in
            if let value = try r.uint64(name) { record[keyPath: path] = value }
        })
    }

    /// A uint64 bit field (KV `Flags`); see `FieldReader.flags`.
    static func flags(_ name: String, _ path: WritableKeyPath<Record, UInt64> & Sendable) -> Self {
        Self(name: name, write: { .unsigned($0[keyPath: path]) }, read: { record, r throws(DecodeError) in
            record[keyPath: path] = try r.flags(name)
        })
    }

    static func bool(_ name: String, _ path: WritableKeyPath<Record, Bool> & Sendable) -> Self {
        Self(name: name, write: { .bool($0[keyPath: path]) }, read: { record, r throws(DecodeError) in
            if let value = try r.bool(name) { record[keyPath: path] = value }
        })
    }

    /// A string enumeration; an unknown value leaves the record's.
    static func raw<Value: RawRepresentable & Sendable>(_ name: String, _ path: WritableKeyPath<Record, Value> & Sendable) -> Self
    where Value.RawValue == String {
        Self(name: name, write: { .string($0[keyPath: path].rawValue) }, read: { record, r throws(DecodeError) in
            if let text = try r.string(name), let value = Value(rawValue: text) { record[keyPath: path] = value }
        })
    }

    /// A Go duration string (`1h0m0s`), left out when nil.
    static func duration(_ name: String, _ path: WritableKeyPath<Record, Duration?> & Sendable) -> Self {
        Self(name: name, write: { $0[keyPath: path].map { .string(GoDuration.format($0)) } }, read: { record, r throws(DecodeError) in
            if let value = try r.duration(name) { record[keyPath: path] = value }
        })
    }

    /// A duration as integer nanoseconds.
    static func nanoseconds(_ name: String, _ path: WritableKeyPath<Record, Duration> & Sendable) -> Self {
        Self(name: name, write: { .int($0[keyPath: path].nanoseconds) }, read: { record, r throws(DecodeError) in
            if let value = try r.int(name) { record[keyPath: path] = .nanoseconds(Int64(value)) }
        })
    }

    /// A JSON document kept as given, left out when nil.
    static func document(_ name: String, _ path: WritableKeyPath<Record, JSON?> & Sendable) -> Self {
        Self(name: name, write: { $0[keyPath: path] }, read: { record, r throws(DecodeError) in
            if let value = r.value(name) { record[keyPath: path] = value }
        })
    }

    /// A value of its own layout, stored as a nested object.
    static func nested<Value: Sendable>(_ name: String, _ path: WritableKeyPath<Record, Value> & Sendable, _ layout: RecordLayout<Value>) -> Self {
        Self(name: name, write: { .object(JSONObject(layout.fields(of: $0[keyPath: path]))) }, read: { record, r throws(DecodeError) in
            if let nested = try r.object(name) { try layout.read(into: &record[keyPath: path], from: nested) }
        })
    }
}

extension RecordField {
    /// A list of values of their own layout, stored as an array of objects.
    static func list<Element: Sendable>(_ name: String, _ path: WritableKeyPath<Record, [Element]> & Sendable,
                                        _ layout: RecordLayout<Element>, empty: @escaping @Sendable () -> Element) -> Self {
        Self(name: name, write: { .array($0[keyPath: path].map { .object(JSONObject(layout.fields(of: $0))) }) },
             read: { record, r throws(DecodeError) in
            guard let readers = try r.objects(name) else { return }
            var elements: [Element] = []
            for reader in readers {
                var element = empty()
                try layout.read(into: &element, from: reader)
                elements.append(element)
            }
            record[keyPath: path] = elements
        })
    }
}
