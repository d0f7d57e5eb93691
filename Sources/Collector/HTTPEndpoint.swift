import Foundation

/// Host, port and path of a plain `http://` URL from the config or the command line.
struct HTTPEndpoint {
    var host: String
    var port: Int
    var path: String

    /// nil unless the URL is `http://HOST[:PORT][/path]`; an empty path becomes `defaultPath`.
    init?(_ url: String, defaultPath: String) {
        guard let parsed = URL(string: url), parsed.scheme == "http", let host = parsed.host, !host.isEmpty else { return nil }
        self.host = host
        port = parsed.port ?? 80
        path = parsed.path.isEmpty || parsed.path == "/" ? defaultPath : parsed.path
    }
}
