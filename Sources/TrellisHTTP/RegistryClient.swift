import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import TrellisCore

/// A small client for the registry's Consul-compatible HTTP API, used by the CLI, `trellis up` and
/// the tests (the daemons use `RegistryAPI`). Plain HTTP over SwiftNIO, one connection per call.
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

    /// The registry could not be reached (or the address is not one this client can use).
    public struct Unreachable: Error, CustomStringConvertible {
        public let description: String
    }

    public let baseURL: String
    private static let http = HTTPClient(group: MultiThreadedEventLoopGroup.singleton)

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

    /// Sends a request and returns the status, headers (names lowercased) and body; throws
    /// `Unreachable` only when the registry cannot be reached.
    public func send(_ method: String, _ path: String, body: [UInt8]? = nil, headers extra: [String: String] = [:],
                     timeout: TimeInterval = 30) async throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        guard let (host, port) = HostPort.parseHTTP(baseURL) else {
            throw Unreachable(description: "\(baseURL) is not an http://host:port address")
        }
        var headers = HTTPHeaders(extra.map { ($0.key, $0.value) })
        if let token = ProcessInfo.processInfo.environment["CONSUL_HTTP_TOKEN"] {
            headers.replaceOrAdd(name: "X-Consul-Token", value: token)
        }
        let response: HTTPClient.Response
        do {
            response = try await Self.http.send(HTTPMethod(rawValue: method), host: host, port: port, path: path, headers: headers,
                                                body: body.map { ByteBuffer(bytes: $0) }, timeout: .milliseconds(Int64(timeout * 1000)))
        } catch let failure as HTTPClient.Failure {
            throw Unreachable(description: failure.description)
        }
        var answerHeaders: [String: String] = [:]
        for (name, value) in response.headers { answerHeaders[name.lowercased()] = value }
        return (Int(response.status.code), answerHeaders, response.bodyBytes)
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
}
