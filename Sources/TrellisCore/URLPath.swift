import Foundation

/// Percent-encoding of URL paths as the registry's API expects them.
public enum URLPath {
    /// Percent-encodes text for a URL path: one segment (service names, IDs), or with `keepingSlashes`
    /// a KV key, which is itself a path.
    public static func escape(_ text: String, keepingSlashes: Bool = false) -> String {
        let reserved = CharacterSet(charactersIn: keepingSlashes ? "?#;" : "/?#;")
        return text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(reserved)) ?? text
    }

    /// Percent-encodes a query parameter's value (everything but RFC 3986's unreserved characters).
    public static func escapeQueryValue(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
    }
}
