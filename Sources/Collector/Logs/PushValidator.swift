import Foundation
import Synchronization
import TrellisCore

/// Loki's per-tenant limits, with Loki's defaults.
public struct LogLimits: Sendable {
    public var maxLineSize = 256 * 1024
    public var maxLabelNamesPerSeries = 15
    public var maxLabelNameLength = 1024
    public var maxLabelValueLength = 2048
    public var rejectOldSamplesMaxAgeNs: Int64 = 7 * 24 * 3600 * 1_000_000_000
    public var creationGracePeriodNs: Int64 = 10 * 60 * 1_000_000_000
    /// Bytes of log lines per second accepted per tenant; 0 means no limit.
    public var ingestionRateBytes: Double = 0
    public var ingestionBurstBytes: Double = 0

    public init() {}
}

/// Applies Loki's validation rules to a decoded push: invalid entries are left out and reported
/// with Loki's messages; valid ones go on, as Loki's distributor does.
public struct PushValidator: Sendable {
    public struct Outcome: Sendable {
        public var accepted: [LogStream] = []
        public var acceptedLines = 0
        public var acceptedBytes = 0
        /// Loki's `reason` → lines rejected for it.
        public var rejected: [String: Int] = [:]
        public var errors: [String] = []

        mutating func reject(_ reason: String, count: Int, _ message: String) {
            rejected[reason, default: 0] += count
            if errors.count < 10 { errors.append(message) }
        }
    }

    public let limits: LogLimits

    public init(limits: LogLimits) { self.limits = limits }

    public func validate(_ streams: [LogStream], now: Date = Date()) -> Outcome {
        var outcome = Outcome()
        let nowNs = Int64(now.timeIntervalSince1970 * 1e9)
        for stream in streams {
            if let (reason, message) = labelProblem(stream) {
                outcome.reject(reason, count: stream.entries.count, message)
                continue
            }
            let labelText = stream.labelString
            var kept = LogStream(labels: stream.labels)
            for entry in stream.entries {
                if entry.timestampNs < nowNs - limits.rejectOldSamplesMaxAgeNs {
                    outcome.reject("greater_than_max_sample_age", count: 1,
                                   "entry for stream '\(labelText)' has timestamp too old: \(Self.time(entry.timestampNs)), oldest acceptable timestamp is: \(Self.time(nowNs - limits.rejectOldSamplesMaxAgeNs))")
                } else if entry.timestampNs > nowNs + limits.creationGracePeriodNs {
                    outcome.reject("too_far_in_future", count: 1,
                                   "entry for stream '\(labelText)' has timestamp too new: \(Self.time(entry.timestampNs))")
                } else if limits.maxLineSize > 0 && entry.line.utf8.count > limits.maxLineSize {
                    outcome.reject("line_too_long", count: 1,
                                   "Max entry size '\(limits.maxLineSize)' bytes exceeded for stream '\(labelText)' while adding an entry with length '\(entry.line.utf8.count)' bytes")
                } else {
                    kept.entries.append(entry)
                    outcome.acceptedLines += 1
                    outcome.acceptedBytes += entry.line.utf8.count
                }
            }
            if !kept.entries.isEmpty { outcome.accepted.append(kept) }
        }
        return outcome
    }

    private func labelProblem(_ stream: LogStream) -> (String, String)? {
        let text = stream.labelString
        if stream.labels.isEmpty { return ("missing_labels", "error at least one label pair is required per stream") }
        if stream.labels.count > limits.maxLabelNamesPerSeries {
            return ("max_label_names_per_series", "entry for stream '\(text)' has \(stream.labels.count) label names; limit \(limits.maxLabelNamesPerSeries)")
        }
        var previous: String?
        for label in stream.labels {
            if !Self.isValidLabelName(label.name) {
                return ("invalid_labels", "Error parsing labels '\(text)' with error: invalid label name \"\(label.name)\"")
            }
            if label.name == previous { return ("duplicate_label_names", "stream '\(text)' has duplicate label name: '\(label.name)'") }
            if label.name.utf8.count > limits.maxLabelNameLength { return ("label_name_too_long", "stream '\(text)' has label name too long: '\(label.name)'") }
            if label.value.utf8.count > limits.maxLabelValueLength { return ("label_value_too_long", "stream '\(text)' has label value too long: '\(label.value)'") }
            previous = label.name
        }
        return nil
    }

    static func isValidLabelName(_ name: String) -> Bool {
        guard let first = name.utf8.first, first == UInt8(ascii: "_") || (first | 0x20 >= 0x61 && first | 0x20 <= 0x7A) else { return false }
        return name.utf8.allSatisfy { $0 == UInt8(ascii: "_") || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) }
    }

    private static func time(_ ns: Int64) -> String {
        Date(timeIntervalSince1970: Double(ns) / 1e9).formatted(.iso8601.year().month().day().time(includingFractionalSeconds: false).timeZone(separator: .omitted))
    }
}

/// Loki's ingestion rate limit: a token bucket of line bytes per tenant.
public final class IngestionLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    private let rate: Double
    private let burst: Double
    private let buckets = Mutex<[String: Bucket]>([:])

    public init(bytesPerSecond: Double, burstBytes: Double) {
        rate = bytesPerSecond
        burst = max(burstBytes, bytesPerSecond)
    }

    /// Takes `bytes` from the tenant's bucket; false when over the limit (nothing is taken then).
    public func admit(tenant: String, bytes: Int) -> Bool {
        guard rate > 0 else { return true }
        let now = ContinuousClock.now
        return buckets.withLock { buckets in
            var bucket = buckets[tenant] ?? Bucket(tokens: burst, updated: now)
            bucket.tokens = min(burst, bucket.tokens + rate * bucket.updated.duration(to: now).seconds)
            bucket.updated = now
            let admitted = bucket.tokens >= Double(bytes)
            if admitted { bucket.tokens -= Double(bytes) }
            buckets[tenant] = bucket
            return admitted
        }
    }

    public var limit: Int { Int(rate) }
}
