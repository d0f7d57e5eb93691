import Foundation

/// A configuration value that is wrong; the description names the field path.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(description: String) { self.description = description }
}

/// Typed access to one parsed YAML mapping, with the field path in every error.
public struct ConfigReader {
    public let values: [String: Any]
    public let path: String

    public init(_ values: [String: Any], path: String) {
        self.values = values
        self.path = path
    }

    private func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    public func invalid(_ key: String, _ message: String) -> ConfigError {
        ConfigError(description: "\(name(key)): \(message)")
    }

    public func has(_ key: String) -> Bool { values[key] != nil }

    public func only(_ allowed: Set<String>) throws(ConfigError) {
        if let unknown = values.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw invalid(unknown, "unknown field (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    public func map(_ key: String) throws(ConfigError) -> ConfigReader? {
        guard let value = values[key], !(value is NSNull) else { return nil }
        guard let map = value as? [String: Any] else { throw invalid(key, "must be a mapping") }
        return ConfigReader(map, path: name(key))
    }

    public func list(_ key: String) throws(ConfigError) -> [ConfigReader] {
        guard let value = values[key], !(value is NSNull) else { return [] }
        guard let items = value as? [Any] else { throw invalid(key, "must be a list") }
        return try items.enumerated().map { index, item throws(ConfigError) in
            guard let map = item as? [String: Any] else { throw invalid("\(key)[\(index)]", "must be a mapping") }
            return ConfigReader(map, path: "\(name(key))[\(index)]")
        }
    }

    public func string(_ key: String) throws(ConfigError) -> String? {
        guard let value = values[key], !(value is NSNull) else { return nil }
        if let text = value as? String { return text }
        if value is Int || value is Double || value is Bool { return "\(value)" }
        throw invalid(key, "must be a string")
    }

    public func requiredString(_ key: String) throws(ConfigError) -> String {
        guard let text = try string(key), !text.isEmpty else { throw invalid(key, "is required") }
        return text
    }

    public func strings(_ key: String) throws(ConfigError) -> [String] {
        guard let value = values[key], !(value is NSNull) else { return [] }
        guard let items = value as? [Any], items.allSatisfy({ $0 is String }) else { throw invalid(key, "must be a list of strings") }
        return items.map { $0 as! String }
    }

    public func int(_ key: String) throws(ConfigError) -> Int? {
        guard let value = values[key], !(value is NSNull) else { return nil }
        guard let number = value as? Int, number >= 0 else { throw invalid(key, "must be a non-negative integer") }
        return number
    }

    public func double(_ key: String) throws(ConfigError) -> Double? {
        guard let value = values[key], !(value is NSNull) else { return nil }
        if let number = value as? Double { return number }
        if let number = value as? Int { return Double(number) }
        throw invalid(key, "must be a number")
    }

    public func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let value = values[key], !(value is NSNull) else { return nil }
        guard let flag = value as? Bool else { throw invalid(key, "must be true or false") }
        return flag
    }

    public func duration(_ key: String) throws(ConfigError) -> Duration? {
        guard let text = try string(key) else { return nil }
        guard let ns = GoDuration.parseNanoseconds(text), ns > 0 else { throw invalid(key, "must be a duration like 15s") }
        return .nanoseconds(ns)
    }
}

extension ConfigReader {
    /// A mapping of string values (numbers and booleans read as their text), keys sorted.
    public func stringMap(_ key: String) throws(ConfigError) -> [(key: String, value: String)] {
        guard let map = try self.map(key) else { return [] }
        return try map.values.keys.sorted().map { name throws(ConfigError) in (name, try map.requiredString(name)) }
    }
}
