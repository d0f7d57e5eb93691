import Foundation
import Yams

/// A configuration that is wrong: the file it came from (when it came from one), the path of the
/// key (`upstreams.catalog.retries.attempts`, `services[0].name`) and what was expected there.
public struct ConfigError: Error, CustomStringConvertible, Sendable, Equatable {
    public var file: String?
    /// The key path; empty for the document as a whole.
    public var path: String
    public var problem: String

    public init(path: String = "", _ problem: String, file: String? = nil) {
        self.file = file
        self.path = path
        self.problem = problem
    }

    /// An error that is about no key of a file.
    public init(description: String) { self.init(description) }

    /// `file: path: problem`; a problem that reads on from the path (`must be …`, `is required`)
    /// follows it as one sentence: `node_id must be a UUID`.
    public var description: String {
        var text = file.map { $0 + ": " } ?? ""
        if !path.isEmpty { text += path + (problem.hasPrefix("must ") || problem.hasPrefix("is ") ? " " : ": ") }
        return text + problem
    }

    /// The same error, said to come from `file` unless it names one already.
    public func inFile(_ file: String) -> ConfigError {
        var error = self
        if error.file == nil { error.file = file }
        return error
    }
}

/// One value of a YAML configuration, with its key path for errors.
public struct ConfigValue {
    public let node: Yams.Node
    public let path: String
    /// The file the value was read from, for errors.
    public let file: String?

    init(_ node: Yams.Node, path: String, file: String?) {
        self.node = node
        self.path = path
        self.file = file
    }

    public func error(_ problem: String) -> ConfigError {
        ConfigError(path: path.isEmpty ? "(top level)" : path, problem, file: file)
    }

    /// A plain `~`, `null` or empty value, which configurations treat as absent.
    var isNull: Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain || scalar.style == .any else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// A single value as text (numbers and booleans as written).
    public func string() throws(ConfigError) -> String {
        guard case .scalar(let scalar) = node else { throw error("must be a single value") }
        return scalar.string
    }

    /// A non-empty single value.
    public func requiredString() throws(ConfigError) -> String {
        let text = try string()
        guard !text.isEmpty else { throw error("is required") }
        return text
    }

    /// The items of a list, each with its index in its path.
    public func items() throws(ConfigError) -> [ConfigValue] {
        guard case .sequence(let sequence) = node else { throw error("must be a list") }
        return sequence.enumerated().map { ConfigValue($1, path: "\(path)[\($0)]", file: file) }
    }

    public func strings() throws(ConfigError) -> [String] {
        var out: [String] = []
        for item in try items() { out.append(try item.string()) }
        return out
    }

    /// A mapping; with `allowed`, any other key is refused by name.
    public func mapping(allowed: Set<String>? = nil) throws(ConfigError) -> ConfigReader {
        try ConfigReader(self, allowed: allowed)
    }

    /// An integer in `range`.
    public func int(_ range: ClosedRange<Int> = 0...Int.max) throws(ConfigError) -> Int {
        guard let value = Int(try string()), range.contains(value) else {
            throw error(range == 0...Int.max ? "must be a non-negative integer"
                                             : "must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// A number in `range`.
    public func double(_ range: ClosedRange<Double> = -Double.greatestFiniteMagnitude...Double.greatestFiniteMagnitude) throws(ConfigError) -> Double {
        guard let value = Double(try string()), range.contains(value) else {
            throw error(range.lowerBound == -Double.greatestFiniteMagnitude ? "must be a number"
                                                                            : "must be a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    public func bool() throws(ConfigError) -> Bool {
        switch try string().lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error("must be true or false")
        }
    }

    /// A Go-style duration (`250ms`, `2s`, `1m30s`); zero only when `allowsZero`.
    public func duration(allowsZero: Bool = false) throws(ConfigError) -> Duration {
        let text = try string()
        guard let nanos = GoDuration.parseNanoseconds(text), nanos > 0 || (allowsZero && nanos == 0) else {
            throw error("invalid duration \"\(text)\" (use a Go duration such as 250ms, 2s or 1m30s)")
        }
        return .nanoseconds(nanos)
    }

    /// The value as JSON, with YAML's types (for documents handed on as JSON, such as service definitions).
    public func json() -> JSON { Self.json(node) }

    private static func json(_ node: Yams.Node) -> JSON {
        switch node {
        case .scalar(let scalar):
            switch node.any {
            case is NSNull: return .null
            case let flag as Bool: return .bool(flag)
            case let number as Int: return .int(Int64(number))
            case let number as Double: return .double(number)
            default: return .string(scalar.string)
            }
        case .sequence(let sequence):
            return .array(sequence.map(json))
        case .mapping(let mapping):
            return .object(JSONObject(mapping.map { (key: $0.key.string ?? "", value: json($0.value)) }))
        case .alias:
            return .null
        }
    }
}

/// Typed access to one YAML mapping of a configuration, in document order; every error names the
/// key path and what was expected, and keys not allowed are refused (Yams refuses keys given twice).
///
/// The one reader of every YAML file Trellis takes: daemon `--config` files, topologies, sidecar
/// policies, collector settings, service definitions.
public struct ConfigReader {
    public let path: String
    public let entries: [(key: String, value: ConfigValue)]
    /// The file the mapping was read from, for errors.
    public let file: String?

    /// The top-level mapping of `yaml` (read from `file`, which errors name); an empty document
    /// reads as an empty mapping.
    public init(yaml: String, file: String? = nil, allowed: Set<String>? = nil) throws(ConfigError) {
        let root: Yams.Node?
        do { root = try Yams.compose(yaml: yaml) } catch { throw ConfigError("not valid YAML: \(error)", file: file) }
        try self.init(ConfigValue(root ?? Yams.Node("~"), path: "", file: file), allowed: allowed)
    }

    /// The top-level mapping of the YAML file at `file`.
    public init(file: String, allowed: Set<String>? = nil) throws(ConfigError) {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ConfigError("cannot read the file", file: file)
        }
        try self.init(yaml: String(decoding: data, as: UTF8.self), file: file, allowed: allowed)
    }

    init(_ value: ConfigValue, allowed: Set<String>?) throws(ConfigError) {
        guard case .mapping(let mapping) = value.node else {
            guard value.isNull else { throw value.error("must be a mapping of fields") }
            self.path = value.path
            self.entries = []
            self.file = value.file
            return
        }
        var entries: [(key: String, value: ConfigValue)] = []
        for (keyNode, valueNode) in mapping {
            let key = try ConfigValue(keyNode, path: value.path, file: value.file).string()
            let path = value.path.isEmpty ? key : "\(value.path).\(key)"
            if let allowed, !allowed.contains(key) {
                throw ConfigError(path: path, "unknown field (allowed: \(allowed.sorted().joined(separator: ", ")))", file: value.file)
            }
            let entry = ConfigValue(valueNode, path: path, file: value.file)
            if !entry.isNull { entries.append((key, entry)) }
        }
        self.path = value.path
        self.entries = entries
        self.file = value.file
    }

    /// The mapping as a JSON object, with YAML's types.
    public var json: JSON { .object(JSONObject(entries.map { (key: $0.key, value: $0.value.json()) })) }

    /// The value of `key`; nil when absent or null.
    public subscript(_ key: String) -> ConfigValue? { entries.first { $0.key == key }?.value }

    public func has(_ key: String) -> Bool { self[key] != nil }

    public func error(_ key: String, _ problem: String) -> ConfigError {
        ConfigError(path: path.isEmpty ? key : "\(path).\(key)", problem, file: file)
    }

    // Shorthands for the values of keys; nil (or empty) when the key is absent.

    public func string(_ key: String) throws(ConfigError) -> String? { try self[key]?.string() }
    public func requiredString(_ key: String) throws(ConfigError) -> String {
        guard let value = self[key] else { throw error(key, "is required") }
        return try value.requiredString()
    }
    public func strings(_ key: String) throws(ConfigError) -> [String] { try self[key]?.strings() ?? [] }
    public func int(_ key: String, _ range: ClosedRange<Int> = 0...Int.max) throws(ConfigError) -> Int? { try self[key]?.int(range) }
    public func double(_ key: String) throws(ConfigError) -> Double? { try self[key]?.double() }
    public func double(_ key: String, _ range: ClosedRange<Double>) throws(ConfigError) -> Double? { try self[key]?.double(range) }
    public func bool(_ key: String) throws(ConfigError) -> Bool? { try self[key]?.bool() }
    public func duration(_ key: String, allowsZero: Bool = false) throws(ConfigError) -> Duration? {
        try self[key]?.duration(allowsZero: allowsZero)
    }
    public func map(_ key: String, allowed: Set<String>? = nil) throws(ConfigError) -> ConfigReader? {
        try self[key]?.mapping(allowed: allowed)
    }

    /// A list of mappings.
    public func list(_ key: String, allowed: Set<String>? = nil) throws(ConfigError) -> [ConfigReader] {
        var out: [ConfigReader] = []
        for item in try self[key]?.items() ?? [] { out.append(try item.mapping(allowed: allowed)) }
        return out
    }

    /// A mapping of single values, in document order.
    public func stringMap(_ key: String) throws(ConfigError) -> [(key: String, value: String)] {
        var out: [(key: String, value: String)] = []
        for (name, value) in try map(key)?.entries ?? [] { out.append((name, try value.string())) }
        return out
    }
}
