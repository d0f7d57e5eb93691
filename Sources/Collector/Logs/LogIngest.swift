import Foundation

/// Every way a line enters the collector ends here: Loki's validation and rate limit, the
/// pipeline, then the disk buffer. A line is acknowledged only once it is on disk.
public final class LogIngest: Sendable {
    public struct Outcome: Sendable {
        /// 204 when everything was stored, 400 with Loki's messages when some lines were invalid
        /// (the valid ones are stored), 429 over the rate limit, 500 when the disk failed.
        public var status: Int
        public var message: String
    }

    let validator: PushValidator
    let limiter: IngestionLimiter
    let pipeline: LogPipeline
    let buffer: LogBuffer
    let metrics: CollectorMetrics

    public init(limits: LogLimits, pipeline: LogPipeline, buffer: LogBuffer, metrics: CollectorMetrics) {
        validator = PushValidator(limits: limits)
        limiter = IngestionLimiter(bytesPerSecond: limits.ingestionRateBytes, burstBytes: limits.ingestionBurstBytes)
        self.pipeline = pipeline
        self.buffer = buffer
        self.metrics = metrics
    }

    public func ingest(_ streams: [LogStream], tenant: String, source: String) async -> Outcome {
        let checked = validator.validate(streams)
        for (reason, count) in checked.rejected { metrics.linesRejected(reason: reason).increment(by: Int64(count)) }
        guard limiter.admit(tenant: tenant, bytes: checked.acceptedBytes) else {
            metrics.linesRejected(reason: "rate_limited").increment(by: Int64(checked.acceptedLines))
            return Outcome(status: 429, message: "Ingestion rate limit exceeded for user \(tenant) (limit: \(limiter.limit) bytes/sec) while attempting to ingest '\(checked.acceptedLines)' lines totaling '\(checked.acceptedBytes)' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased")
        }
        let processed = pipeline.process(checked.accepted)
        if processed.dropped > 0 { metrics.linesDropped(reason: "pipeline_rule").increment(by: Int64(processed.dropped)) }
        if !processed.streams.isEmpty {
            do {
                _ = try await buffer.append(PushCodec.encodeProtobuf(processed.streams))
            } catch {
                return Outcome(status: 500, message: "\(error)")
            }
        }
        metrics.linesReceived(source: source).increment(by: Int64(checked.acceptedLines))
        if !checked.errors.isEmpty { return Outcome(status: 400, message: checked.errors.joined(separator: "\n")) }
        return Outcome(status: 204, message: "")
    }
}
