import NIOCore
import NIOHTTP1

/// The registry's Consul API as the sidecar and the collector use it: plain calls and blocking queries.
public struct RegistryAPI: Sendable {
    public let client: HTTPClient
    public let host: String
    public let port: Int

    public init(client: HTTPClient, host: String, port: Int) {
        self.client = client
        self.host = host
        self.port = port
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public func call(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, timeout: TimeAmount = .seconds(10)) async throws -> HTTPClient.Response {
        var headers = HTTPHeaders()
        if body != nil { headers.add(name: "Content-Type", value: "application/json") }
        return try await client.send(method, host: host, port: port, path: path, headers: headers,
                                     body: body.map { ByteBuffer(bytes: $0) }, timeout: timeout)
    }

    /// Calls and insists on 200.
    public func expectOK(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil) async throws {
        let response = try await call(method, path, body: body)
        guard response.status == .ok else {
            throw Failure(description: "\(method) \(path): registry answered \(response.status.code): \(String(decoding: response.bodyBytes, as: UTF8.self))")
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
                    throw Failure(description: "registry answered \(response.status.code) to \(path)")
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
