import TrellisCore

/// A request body field that is present but of the wrong type or form.
public struct DecodeError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Typed, case-insensitive access to a JSON object, with errors that name the field.
struct FieldReader {
    let object: JSONObject

    init(_ object: JSONObject) { self.object = object }

    init(_ json: JSON, context: String) throws(DecodeError) {
        guard let object = json.objectValue else { throw DecodeError("\(context) must be a JSON object") }
        self.object = object
    }

    /// The raw value, treating JSON null like an absent field.
    func value(_ name: String) -> JSON? {
        guard let value = object.field(name), !value.isNull else { return nil }
        return value
    }

    func has(_ name: String) -> Bool { value(name) != nil }

    func string(_ name: String) throws(DecodeError) -> String? {
        guard let value = value(name) else { return nil }
        guard let text = value.stringValue else { throw DecodeError("\(name) must be a string") }
        return text
    }

    func int(_ name: String) throws(DecodeError) -> Int? {
        guard let value = value(name) else { return nil }
        guard let number = value.intValue, let int = Int(exactly: number) else {
            throw DecodeError("\(name) must be an integer")
        }
        return int
    }

    func uint64(_ name: String) throws(DecodeError) -> UInt64? {
        guard let value = value(name) else { return nil }
        guard let number = value.uint64Value else { throw DecodeError("\(name) must be a non-negative integer") }
        return number
    }

    /// A uint64 bit field such as KV `Flags`; records stored before the whole range was kept wrote
    /// values above `Int64.max` as negative numbers, which are read back as the same bits.
    func flags(_ name: String) throws(DecodeError) -> UInt64 {
        if case .int(let signed)? = value(name), signed < 0 { return UInt64(bitPattern: signed) }
        return try uint64(name) ?? 0
    }

    func bool(_ name: String) throws(DecodeError) -> Bool? {
        guard let value = value(name) else { return nil }
        guard let flag = value.boolValue else { throw DecodeError("\(name) must be a boolean") }
        return flag
    }

    func strings(_ name: String) throws(DecodeError) -> [String]? {
        guard let value = value(name) else { return nil }
        guard let items = value.arrayValue else { throw DecodeError("\(name) must be an array of strings") }
        var out: [String] = []
        for item in items {
            guard let text = item.stringValue else { throw DecodeError("\(name) must be an array of strings") }
            out.append(text)
        }
        return out
    }

    func stringMap(_ name: String) throws(DecodeError) -> [String: String]? {
        guard let value = value(name) else { return nil }
        guard let map = value.objectValue else { throw DecodeError("\(name) must be an object of strings") }
        var out: [String: String] = [:]
        for (key, item) in map.pairs {
            guard let text = item.stringValue else { throw DecodeError("\(name).\(key) must be a string") }
            out[key] = text
        }
        return out
    }

    func object(_ name: String) throws(DecodeError) -> FieldReader? {
        guard let value = value(name) else { return nil }
        return try FieldReader(value, context: name)
    }

    func objects(_ name: String) throws(DecodeError) -> [FieldReader]? {
        guard let value = value(name) else { return nil }
        guard let items = value.arrayValue else { throw DecodeError("\(name) must be an array of objects") }
        var out: [FieldReader] = []
        for item in items { out.append(try FieldReader(item, context: name)) }
        return out
    }

    /// A duration given as a Go duration string (`"10s"`) or as integer nanoseconds.
    func duration(_ name: String) throws(DecodeError) -> Duration? {
        guard let value = value(name) else { return nil }
        if let text = value.stringValue {
            if text.isEmpty { return nil }
            guard let nanos = GoDuration.parseNanoseconds(text) else {
                throw DecodeError("\(name): invalid duration \"\(text)\"")
            }
            return .nanoseconds(nanos)
        }
        if let nanos = value.intValue { return .nanoseconds(nanos) }
        throw DecodeError("\(name) must be a duration such as \"10s\"")
    }
}
