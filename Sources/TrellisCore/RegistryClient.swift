import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A small client for the registry's Consul-compatible HTTP API, used by the CLI and the other daemons.
public struct RegistryClient: Sendable {
    /// A non-2xx answer, with the registry's own message.
    public struct Failure: Error, CustomStringConvertible {
        public let status: Int
        public let message: String
        public var description: String { "registry answered \(status): \(message)" }

        public init(status: Int, message: String) {
            self.status = status
            self.message = message
        }
    }

    public let baseURL: String

    /// One session for all clients: many connections per host, since blocking queries hold theirs for minutes.
    private static let session: URLSession = {
        let configuration = URLSessionConfiguration.default
        configuration.httpMaximumConnectionsPerHost = 1024
        configuration.timeoutIntervalForRequest = 11 * 60
        configuration.timeoutIntervalForResource = 11 * 60
        return URLSession(configuration: configuration)
    }()

    /// Resolves the registry address: explicit value, else `TRELLIS_ADDR`, else `CONSUL_HTTP_ADDR`, else 127.0.0.1:8500.
    public static func resolveAddress(_ explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let raw = [explicit, environment["TRELLIS_ADDR"], environment["CONSUL_HTTP_ADDR"]]
            .compactMap { $0 }.first { !$0.isEmpty } ?? "127.0.0.1:8500"
        let trimmed = raw.hasSuffix("/") ? String(raw.dropLast()) : raw
        return trimmed.contains("://") ? trimmed : "http://" + trimmed
    }

    public init(address: String?) {
        baseURL = Self.resolveAddress(address)
    }

    /// Sends a request and returns the status, headers and body; throws only when the registry cannot be reached.
    public func send(_ method: String, _ path: String, body: [UInt8]? = nil, headers extra: [String: String] = [:],
                     timeout: TimeInterval = 30) async throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        guard let url = URL(string: baseURL + path) else { throw Failure(status: 0, message: "invalid URL \(baseURL + path)") }
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = method
        // An explicit (possibly empty) body: without one, PUTs go out chunked and some servers wait for it.
        if method != "GET" && method != "HEAD" { request.httpBody = Data(body ?? []) }
        for (name, value) in extra { request.setValue(value, forHTTPHeaderField: name) }
        if let token = ProcessInfo.processInfo.environment["CONSUL_HTTP_TOKEN"] {
            request.setValue(token, forHTTPHeaderField: "X-Consul-Token")
        }
        let (data, response) = try await Self.session.data(for: request)
        let http = response as? HTTPURLResponse
        var headers: [String: String] = [:]
        for (key, value) in http?.allHeaderFields ?? [:] {
            if let key = key as? String, let value = value as? String { headers[key.lowercased()] = value }
        }
        return (http?.statusCode ?? 0, headers, [UInt8](data))
    }

    /// Sends a request and parses a JSON answer, throwing `Failure` on a non-2xx status.
    public func json(_ method: String, _ path: String, body: [UInt8]? = nil, timeout: TimeInterval = 30) async throws -> (JSON, index: UInt64) {
        let (status, headers, bytes) = try await send(method, path, body: body, timeout: timeout)
        guard (200..<300).contains(status) else {
            throw Failure(status: status, message: String(decoding: bytes, as: UTF8.self))
        }
        let index = headers["x-consul-index"].flatMap(UInt64.init) ?? 0
        return (bytes.isEmpty ? .null : try JSON.parse(bytes), index)
    }

    /// Percent-encodes text for a URL path: one segment (service names, IDs), or with `keepingSlashes`
    /// a KV key, which is itself a path.
    public static func escape(_ text: String, keepingSlashes: Bool = false) -> String {
        let reserved = CharacterSet(charactersIn: keepingSlashes ? "?#;" : "/?#;")
        return text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(reserved)) ?? text
    }
}
