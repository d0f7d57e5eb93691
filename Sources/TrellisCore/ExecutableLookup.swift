import Foundation

/// Finds the executable a command name means, as a shell would.
public enum ExecutableLookup {
    /// A path as given, else the first match on `path` (a `PATH` value; the usual directories when nil).
    public static func resolve(_ name: String, path: String?) throws -> String {
        if name.contains("/") {
            guard FileManager.default.isExecutableFile(atPath: name) else { throw CommandNotFound(name: name) }
            return name
        }
        for directory in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw CommandNotFound(name: name)
    }

    public struct CommandNotFound: Error, CustomStringConvertible {
        public let name: String
        public var description: String { "command not found or not executable: \(name)" }
    }
}
