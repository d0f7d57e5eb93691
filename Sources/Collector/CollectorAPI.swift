import Foundation
import NIOCore
import NIOHTTP1
import Telemetry
import TrellisCore
import TrellisHTTP

/// The collector's HTTP API: Prometheus exposition (`/metrics`, `/federate`), Loki's push and
/// query endpoints, `/api/v1/targets` and `/ready`.
public struct CollectorAPI: HTTPResponder {
    let store: SeriesStore
    let ingest: LogIngest
    let query: LogQueryService
    let metrics: CollectorMetrics
    let buffer: LogBuffer
    /// How far logs are shipped (the buffer's end when nothing ships).
    let shipped: @Sendable () -> BufferPosition
    /// Largest push body after decompression (Loki's default gRPC message limit is 100 MB).
    let maxDecompressedBody = 100 << 20

    public init(store: SeriesStore, ingest: LogIngest, buffer: LogBuffer, metrics: CollectorMetrics,
                shipped: @escaping @Sendable () -> BufferPosition) {
        self.store = store
        self.ingest = ingest
        self.query = LogQueryService(buffer: buffer)
        self.buffer = buffer
        self.metrics = metrics
        self.shipped = shipped
    }

    public func respond(to request: HTTPRequest, on eventLoop: any EventLoop, cancellation: CancellationSignal) -> EventLoopFuture<HTTPResponse> {
        switch (request.method, request.path) {
        case (.GET, "/metrics"), (.GET, "/federate"):
            return eventLoop.makeSucceededFuture(exposition(request))
        case (.POST, "/loki/api/v1/push"):
            let promise = eventLoop.makePromise(of: HTTPResponse.self)
            promise.completeWithTask { await push(request) }
            return promise.futureResult
        case (.GET, "/loki/api/v1/query_range"):
            let promise = eventLoop.makePromise(of: HTTPResponse.self)
            promise.completeWithTask { queryRange(request) }
            return promise.futureResult
        case (.GET, "/api/v1/targets"):
            return eventLoop.makeSucceededFuture(.json(targets()))
        case (.GET, "/ready"):
            return eventLoop.makeSucceededFuture(.text(.ok, "ready\n"))
        case (_, "/metrics"), (_, "/federate"), (_, "/loki/api/v1/push"), (_, "/loki/api/v1/query_range"), (_, "/ready"), (_, "/api/v1/targets"):
            return eventLoop.makeSucceededFuture(.text(.methodNotAllowed, "method \(request.method) not allowed\n"))
        default:
            return eventLoop.makeSucceededFuture(.text(.notFound, "404 page not found\n"))
        }
    }

    private func exposition(_ request: HTTPRequest) -> HTTPResponse {
        var selectors: [LabelSelector] = []
        for text in request.query.all("match[]") {
            do { selectors.append(try LabelSelector.parse(text)) } catch {
                return .text(.badRequest, "invalid match[] \"\(text)\": \(error)\n")
            }
        }
        if request.path == "/federate" && selectors.isEmpty { return .text(.badRequest, "/federate needs at least one match[]\n") }
        var body = store.render(matching: selectors, timestamps: request.path == "/federate")
        if selectors.isEmpty {
            metrics.refresh(store: store, buffer: buffer, unshippedFrom: shipped())
            body.append(contentsOf: metrics.registry.render())
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: MetricsRegistry.contentType)
        if Self.accepts(gzip: request.headers) {
            body = Compression.compress(body, level: 1)
            headers.add(name: "Content-Encoding", value: "gzip")
        }
        return HTTPResponse(status: .ok, headers: headers, body: ByteBuffer(bytes: body))
    }

    static func accepts(gzip headers: HTTPHeaders) -> Bool {
        headers[canonicalForm: "Accept-Encoding"].contains { token in
            let parts = token.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            return parts.first?.lowercased() == "gzip" && !parts.dropFirst().contains { $0.replacingOccurrences(of: " ", with: "") == "q=0" }
        }
    }

    private func push(_ request: HTTPRequest) async -> HTTPResponse {
        var body = request.bodyBytes
        switch request.headers.first(name: "Content-Encoding")?.lowercased() {
        case nil, "", "identity": break
        case "gzip", "deflate":
            do { body = try Compression.decompress(body, limit: maxDecompressedBody) } catch {
                return .text(.badRequest, "\(error)\n")
            }
        case let other?:
            return .text(.unsupportedMediaType, "Content-Encoding \(other) not supported\n")
        }
        let contentType = request.headers.first(name: "Content-Type")?.split(separator: ";").first?
            .trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        let streams: [LogStream]
        do {
            if contentType == "application/json" {
                streams = try PushCodec.decodeJSON(body)
            } else {
                streams = try PushCodec.decodeProtobuf(try Compression.snappyDecompress(body, limit: maxDecompressedBody))
            }
        } catch {
            metrics.linesRejected(reason: "invalid_request").increment()
            return .text(.badRequest, "\(error)\n")
        }
        let tenant = request.headers.first(name: "X-Scope-OrgID") ?? "fake"
        let outcome = await ingest.ingest(streams, tenant: tenant, source: "push")
        if outcome.status == 204 { return HTTPResponse(status: .noContent) }
        return .text(HTTPResponseStatus(statusCode: outcome.status), outcome.message + "\n")
    }

    private func queryRange(_ request: HTTPRequest) -> HTTPResponse {
        do {
            let parsed = try LogQueryService.request { request.query[$0] }
            return .json(try query.run(parsed))
        } catch let error as LogQueryService.BadRequest {
            return .text(.badRequest, error.description + "\n")
        } catch {
            return .text(.internalServerError, "\(error)\n")
        }
    }

    private func targets() -> [UInt8] {
        let active: [JSON] = store.snapshot().map { entry in
            .object(JSONObject([
                ("labels", .object(JSONObject(entry.target.labels.map { ($0.name, .string($0.value)) }))),
                ("scrapeUrl", .string(entry.target.url)),
                ("health", .string(entry.result.up ? "up" : "down")),
                ("lastError", .string(entry.result.error ?? "")),
                ("lastScrape", .string(entry.result.time.formatted(.iso8601))),
                ("lastScrapeDuration", .double(entry.result.durationSeconds)),
            ]))
        }
        return JSON.object(JSONObject([
            ("status", .string("success")),
            ("data", .object(JSONObject([("activeTargets", .array(active))]))),
        ])).serialized()
    }
}
