import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import TrellisCore
import TrellisHTTP

/// Where and how logs are shipped.
public struct LokiTarget: Sendable {
    public enum Format: String, Sendable {
        /// snappy-compressed `logproto.PushRequest`, what Promtail and Alloy send.
        case protobuf
        /// gzip-compressed JSON.
        case json
    }

    public var host: String
    public var port: Int
    public var path: String
    public var tenant: String?
    public var format: Format = .protobuf

    /// `http://host:3100` or a full push URL.
    public init(url: String, tenant: String?, format: Format) throws {
        guard let endpoint = HTTPEndpoint(url, defaultPath: "/loki/api/v1/push") else {
            throw CollectorSettings.Invalid(description: "Loki URL must be http://HOST[:PORT][/path], got \"\(url)\"")
        }
        (host, port, path) = (endpoint.host, endpoint.port, endpoint.path)
        self.tenant = tenant
        self.format = format
    }
}

/// Ships the disk buffer to Loki in order: batches by size and time, retries with exponential
/// backoff on 429, 5xx and connection errors, and moves its saved position only after Loki
/// acknowledged a batch — at-least-once, with duplicates only from the last unacknowledged batch.
public final class LokiShipper: Sendable {
    private let buffer: LogBuffer
    private let position: PositionFile
    private let target: LokiTarget
    private let client: HTTPClient
    private let metrics: CollectorMetrics
    private let logger: Logger
    let batchBytes: Int
    let batchWait: Duration
    let retentionBytes: UInt64
    private let progress: Mutex<BufferPosition>

    /// Where Loki's acknowledgements have reached.
    public var shipped: BufferPosition { progress.withLock { $0 } }

    public init(buffer: LogBuffer, position: PositionFile, target: LokiTarget, client: HTTPClient, metrics: CollectorMetrics,
                logger: Logger, batchBytes: Int, batchWait: Duration, retentionBytes: UInt64) {
        self.buffer = buffer
        self.position = position
        self.target = target
        self.client = client
        self.metrics = metrics
        self.logger = logger
        self.batchBytes = batchBytes
        self.batchWait = batchWait
        self.retentionBytes = retentionBytes
        progress = Mutex(position.load() ?? buffer.start)
    }

    public func run() async {
        var shipped = max(self.shipped, buffer.start)
        while !Task.isCancelled {
            do {
                let pending = buffer.sizes(after: shipped).after
                if pending == 0 {
                    try await Task.sleep(for: .milliseconds(50))
                    continue
                }
                // A small batch waits for company, up to the batch wait.
                if pending < UInt64(batchBytes) { try await Task.sleep(for: batchWait) }
                let records = try buffer.read(from: shipped, maxBytes: batchBytes)
                guard !records.isEmpty else { continue }
                var merger = StreamMerger()
                for record in records {
                    for stream in try PushCodec.decodeProtobuf(record.payload) { merger.add(stream) }
                }
                let lines = merger.streams.reduce(0) { $0 + $1.entries.count }
                try await deliver(merger.streams, lines: lines)
                shipped = records.last!.end
                try position.save(shipped)
                progress.withLock { $0 = shipped }
                metrics.linesShipped.increment(by: Int64(lines))
                buffer.trim(shipped: shipped, retentionBytes: retentionBytes)
            } catch is CancellationError {
                return
            } catch {
                logger.error("log shipping stopped on a buffer error; retrying", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Pushes until Loki takes the batch, or refuses it for good (another 4xx: logged and dropped,
    /// as retrying a request Loki calls invalid can never succeed).
    private func deliver(_ streams: [LogStream], lines: Int) async throws {
        var headers = HTTPHeaders()
        let body: [UInt8]
        switch target.format {
        case .protobuf:
            headers.add(name: "Content-Type", value: "application/x-protobuf")
            body = Compression.snappyCompress(PushCodec.encodeProtobuf(streams))
        case .json:
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Encoding", value: "gzip")
            body = Compression.compress(PushCodec.encodeJSON(streams))
        }
        if let tenant = target.tenant { headers.add(name: "X-Scope-OrgID", value: tenant) }
        headers.add(name: "User-Agent", value: "trellis-collector")
        var attempt = 0
        while true {
            try Task.checkCancellation()
            let started = ContinuousClock.now
            let reason: String
            do {
                let response = try await client.send(.POST, host: target.host, port: target.port, path: target.path,
                                                     headers: headers, body: ByteBuffer(bytes: body), timeout: .seconds(30))
                metrics.pushDuration.record(started.duration(to: .now).seconds)
                let code = Int(response.status.code)
                if (200..<300).contains(code) { return }
                let message = String(decoding: response.bodyBytes.prefix(512), as: UTF8.self)
                if code != 429 && (400..<500).contains(code) {
                    metrics.linesDropped(reason: "loki_rejected").increment(by: Int64(lines))
                    logger.error("Loki refused a batch; dropped", metadata: ["status": "\(code)", "lines": "\(lines)", "message": "\(message)"])
                    return
                }
                reason = String(code)
                logger.warning("Loki push failed; retrying", metadata: ["status": "\(code)", "message": "\(message)", "attempt": "\(attempt + 1)"])
            } catch {
                reason = "connection"
                logger.warning("Loki push failed; retrying", metadata: ["error": "\(error)", "attempt": "\(attempt + 1)"])
            }
            metrics.pushErrors(reason: reason).increment()
            attempt += 1
            try await Task.sleep(for: Self.backoff(attempt: attempt))
        }
    }

    /// Exponential backoff with full jitter: 0…min(30 s, 250 ms · 2^attempt).
    static func backoff(attempt: Int) -> Duration {
        let ceiling = min(30_000.0, 250.0 * pow(2, Double(min(attempt, 10))))
        return .milliseconds(Int.random(in: 50...max(50, Int(ceiling))))
    }
}
