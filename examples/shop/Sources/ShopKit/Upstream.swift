import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Hummingbird

/// Another service, reached at the local URL given in `UPSTREAM_<NAME>_URL`. Calls carry the
/// incoming request's `traceparent`, so one trace spans every service a request touches.
public struct Upstream: Sendable {
    public let name: String
    public let baseURL: URL
    private static let session = URLSession(configuration: .ephemeral)

    public init(_ name: String) throws {
        let variable = "UPSTREAM_\(name.uppercased().replacingOccurrences(of: "-", with: "_"))_URL"
        guard let text = ProcessInfo.processInfo.environment[variable], let url = URL(string: text), url.host != nil else {
            throw ShopError.configuration("\(variable) must be the URL of the \(name) service")
        }
        self.name = name
        baseURL = url
    }

    /// Sends a request with an optional JSON body; answers the status and the decoded body when the
    /// status is 2xx. An unreachable upstream becomes a 502 naming it.
    public func send<Answer: Decodable>(_ method: String, _ path: String, json body: (some Encodable)? = Optional<Int>.none,
                                        headers: [String: String] = [:], as _: Answer.Type = Answer.self) async throws -> (status: Int, body: Answer?) {
        var request = URLRequest(url: baseURL.appending(path: path))
        request.httpMethod = method
        request.timeoutInterval = 10
        if let parent = Trace.parent { request.setValue(parent, forHTTPHeaderField: "traceparent") }
        for (field, value) in headers { request.setValue(value, forHTTPHeaderField: field) }
        if let body {
            request.httpBody = try JSONEncoder().encode(body)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let data: Data, response: URLResponse
        do {
            (data, response) = try await Self.session.data(for: request)
        } catch {
            throw HTTPError(.badGateway, message: "\(name) unreachable: \(error.localizedDescription)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 502
        guard (200..<300).contains(status) else { return (status, nil) }
        do {
            return (status, try JSONDecoder().decode(Answer.self, from: data))
        } catch {
            throw HTTPError(.badGateway, message: "\(name) answered \(method) \(path) with a body that is not the expected JSON")
        }
    }
}
