import Foundation

/// Percent-encoding of URL paths as the registry's API expects them.
public enum URLPath {
    /// Percent-encodes text for a URL path: one segment (service names, IDs), or with `keepingSlashes`
    /// a KV key, which is itself a path.
    public static func escape(_ text: String, keepingSlashes: Bool = false) -> String {
        let reserved = CharacterSet(charactersIn: keepingSlashes ? "?#;" : "/?#;")
        return text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(reserved)) ?? text
    }
}
