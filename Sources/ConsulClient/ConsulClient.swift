// ConsulClient: the one client of the registry's Consul API, used by the daemons, `trellis up`
// and the CLI, with registration and the names processes agree on through the registry.

import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import TrellisCore
import TrellisHTTP

/// The one client of the registry's Consul-compatible HTTP API, for the daemons (plain calls,
/// blocking queries, registration), `trellis up` and the CLI. Plain HTTP over SwiftNIO, one
/// connection per call.
public struct ConsulClient: Sendable {
    public enum Failure: Error, CustomStringConvertible {
        /// The registry could not be reached, or the address is not one this client can use.
        case unreachable(String)
        /// A non-2xx answer, with the registry's own message.
        case answered(status: Int, message: String)

        public var description: String {
            switch self {
            case .unreachable(let reason): reason
            case .answered(let status, let message): "registry answered \(status): \(message)"
            }
        }
    }

    /// `http://host:port`, as given or resolved.
    public let address: String
    private let endpoint: (host: String, port: Int)?
    private let http: HTTPClient
    /// Sent as `X-Consul-Token` when set.
    private let token: String?
    private static let sharedHTTP = HTTPClient(group: MultiThreadedEventLoopGroup.singleton)

    /// A client of the registry at `address`, else `TRELLIS_ADDR`, else `CONSUL_HTTP_ADDR`, else
    /// 127.0.0.1:8500, with `token`, else the token of `CONSUL_HTTP_TOKEN` (the CLI's and `trellis up`'s way).
    public init(address: String?, token: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.address = Self.resolveAddress(address, environment: environment)
        endpoint = HostPort.parseHTTP(self.address)
        http = Self.sharedHTTP
        self.token = token ?? environment["CONSUL_HTTP_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// A client of the registry at `host:port` over `http` (a daemon's own event loops), sending `token`.
    public init(host: String, port: Int, http: HTTPClient, token: String? = nil) {
        address = "http://" + HostPort.format(host, port)
        endpoint = (host, port)
        self.http = http
        self.token = token
    }

    /// The token a process uses: `explicit`, else the contents of `file`, else `CONSUL_HTTP_TOKEN`,
    /// else the contents of `CONSUL_HTTP_TOKEN_FILE`, as Consul's tools look for one.
    public static func resolveToken(_ explicit: String?, file: String?,
                                    environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String? {
        func read(_ path: String) throws -> String {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw Failure.unreachable("cannot read the token file \(path)")
            }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if let explicit, !explicit.isEmpty { return explicit }
        if let file, !file.isEmpty { return try read(file) }
        if let token = environment["CONSUL_HTTP_TOKEN"], !token.isEmpty { return token }
        if let file = environment["CONSUL_HTTP_TOKEN_FILE"], !file.isEmpty { return try read(file) }
        return nil
    }

    /// Resolves the registry address: explicit value, else `TRELLIS_ADDR`, else `CONSUL_HTTP_ADDR`, else 127.0.0.1:8500.
    public static func resolveAddress(_ explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        let raw = [explicit, environment["TRELLIS_ADDR"], environment["CONSUL_HTTP_ADDR"]]
            .compactMap { $0 }.first { !$0.isEmpty } ?? "127.0.0.1:8500"
        let trimmed = raw.hasSuffix("/") ? String(raw.dropLast()) : raw
        return trimmed.contains("://") ? trimmed : "http://" + trimmed
    }

    /// One exchange; throws `Failure.unreachable` only when the registry cannot be reached.
    public func call(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, headers extra: [String: String] = [:],
                     timeout: TimeAmount = .seconds(10)) async throws -> HTTPClient.Response {
        guard let endpoint else { throw Failure.unreachable("\(address) is not an http://host:port address") }
        var headers = HTTPHeaders(extra.map { ($0.key, $0.value) })
        if body != nil && headers["Content-Type"].isEmpty { headers.add(name: "Content-Type", value: "application/json") }
        if let token { headers.replaceOrAdd(name: "X-Consul-Token", value: token) }
        do {
            return try await http.send(method, host: endpoint.host, port: endpoint.port, path: path, headers: headers,
                                       body: body.map { ByteBuffer(bytes: $0) }, timeout: timeout)
        } catch let failure as HTTPClient.Failure {
            throw Failure.unreachable(failure.description)
        }
    }

    /// One exchange, with the status, the headers (names lowercased) and the body.
    public func send(_ method: String, _ path: String, body: [UInt8]? = nil, headers extra: [String: String] = [:],
                     timeout: TimeInterval = 30) async throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        let response = try await call(HTTPMethod(rawValue: method), path, body: body, headers: extra,
                                      timeout: .milliseconds(Int64(timeout * 1000)))
        var headers: [String: String] = [:]
        for (name, value) in response.headers { headers[name.lowercased()] = value }
        return (Int(response.status.code), headers, response.bodyBytes)
    }

    /// Sends a request and parses a JSON answer, throwing `Failure.answered` on a non-2xx status.
    public func json(_ method: String, _ path: String, body: [UInt8]? = nil, timeout: TimeInterval = 30) async throws -> (JSON, index: UInt64) {
        let (status, headers, bytes) = try await send(method, path, body: body, timeout: timeout)
        guard (200..<300).contains(status) else {
            throw Failure.answered(status: status, message: String(decoding: bytes, as: UTF8.self))
        }
        let index = headers["x-consul-index"].flatMap(UInt64.init) ?? 0
        return (bytes.isEmpty ? .null : try JSON.parse(bytes), index)
    }

    /// Sends a request and decodes a JSON answer as `T` (see `Views`), throwing `Failure.answered` on a non-2xx status.
    public func decode<T: Decodable>(_ type: T.Type, _ method: String, _ path: String, timeout: TimeInterval = 30) async throws -> T {
        let (status, _, bytes) = try await send(method, path, timeout: timeout)
        guard (200..<300).contains(status) else {
            throw Failure.answered(status: status, message: String(decoding: bytes, as: UTF8.self))
        }
        return try Views.decode(type, from: bytes)
    }

    /// Calls and insists on 200.
    public func expectOK(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil) async throws {
        let response = try await call(method, path, body: body)
        guard response.status == .ok else {
            throw Failure.answered(status: Int(response.status.code),
                                   message: "\(method) \(path): \(String(decoding: response.bodyBytes, as: UTF8.self))")
        }
    }

    /// Follows one blocking query forever: `onChange` gets each answer whose index moved.
    /// Errors are retried with a growing pause; the last good answer stays in force meanwhile.
    public func watch(_ path: String, wait: String = "60s", onError: (String) -> Void,
                      onChange: (HTTPClient.Response) async throws -> Void) async {
        var index: UInt64 = 0
        var failures = 0
        let separator = path.contains("?") ? "&" : "?"
        while !Task.isCancelled {
            do {
                let response = try await call(.GET, "\(path)\(separator)index=\(index)&wait=\(wait)", timeout: .seconds(75))
                guard response.status == .ok || response.status == .notFound else {
                    throw Failure.answered(status: Int(response.status.code), message: "blocking query \(path)")
                }
                let next = response.headers.first(name: "X-Consul-Index").flatMap(UInt64.init) ?? 0
                // Consul's rule: an index that goes backwards (registry restored) restarts the watch.
                let changed = next != index || index == 0
                index = next < index ? 0 : next
                failures = 0
                if changed { try await onChange(response) }
            } catch {
                if Task.isCancelled { return }
                failures += 1
                onError("\(error)")
                try? await Task.sleep(for: .milliseconds(min(5000, 100 * (1 << min(failures, 6)))))
            }
        }
    }
}
