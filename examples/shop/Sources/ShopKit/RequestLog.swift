import Foundation
import Hummingbird
import Logging

/// The trace context of the request being served, copied onto outgoing calls by `Upstream`.
public enum Trace {
    @TaskLocal public static var parent: String?

    /// The trace id inside a W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`).
    public static func id(of traceparent: String?) -> String? {
        guard let parts = traceparent?.split(separator: "-"), parts.count == 4, parts[1].count == 32 else { return nil }
        return String(parts[1])
    }
}

/// Logs one JSON line per request (method, path, status, duration, trace id) and runs the handler
/// with the request's `traceparent` in `Trace.parent`.
struct RequestLog<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let traceparent = request.headers.first { $0.name.canonicalName == "traceparent" }?.value
        let started = ContinuousClock.now
        var status = 500
        defer {
            let milliseconds = (ContinuousClock.now - started) / .milliseconds(1)
            var metadata: Logger.Metadata = [
                "method": "\(request.method.rawValue)", "path": "\(request.uri.path)", "status": "\(status)",
                "duration_ms": "\((milliseconds * 1000).rounded() / 1000)",
            ]
            if let trace = Trace.id(of: traceparent) { metadata["trace_id"] = "\(trace)" }
            logger.info("request", metadata: metadata)
        }
        return try await Trace.$parent.withValue(traceparent) {
            do {
                let response = try await next(request, context)
                status = response.status.code
                return response
            } catch let error as HTTPResponseError {
                status = error.status.code
                throw error
            }
        }
    }
}
