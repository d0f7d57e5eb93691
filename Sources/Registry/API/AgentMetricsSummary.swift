import Foundation
import TrellisCore

/// The registry's Prometheus exposition as Consul's `/v1/agent/metrics` JSON (`Gauges`, `Counters`,
/// `Samples`), with the process's memory as Consul's `consul.runtime.*` gauges. Unlike Consul's in-memory sink, which summarises the last 10-second interval, the
/// figures are cumulative since the registry started: counters carry their total as `Count` and
/// `Sum`, histograms their `_count` and `_sum` (with `Mean`); `Min`, `Max` and `Stddev` are not kept.
struct AgentMetricsSummary {
    private var gauges: [JSON] = []
    private var counters: [JSON] = []
    private var samples: [JSON] = []

    /// `runtime`: gauges under Consul's own names (`consul.runtime.alloc_bytes`…) that clients look for.
    init(exposition: [UInt8], runtime: [(name: String, value: Double)] = []) {
        gauges = runtime.map { Self.entry($0.name, [], [("Value", .double($0.value))]) }
        var types: [String: String] = [:]
        var histograms: [String: (labels: [(String, String)], count: Double, sum: Double)] = [:]
        var histogramOrder: [String] = []
        for line in String(decoding: exposition, as: UTF8.self).split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                if parts.count == 4 { types[String(parts[2])] = String(parts[3]) }
                continue
            }
            guard !line.hasPrefix("#"), let sample = Self.parse(line) else { continue }
            if types[sample.name] == "gauge" {
                gauges.append(Self.entry(sample.name, sample.labels, [("Value", .double(sample.value))]))
            } else if types[sample.name] == "counter" || sample.name.hasSuffix("_total") && types[sample.name] == nil {
                counters.append(Self.entry(sample.name, sample.labels, Self.summary(count: sample.value, sum: sample.value)))
            } else if sample.name.hasSuffix("_count") || sample.name.hasSuffix("_sum") {
                let base = String(sample.name.dropLast(sample.name.hasSuffix("_sum") ? 4 : 6))
                let key = base + "\u{0}" + sample.labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
                if histograms[key] == nil { histogramOrder.append(key); histograms[key] = (sample.labels, 0, 0) }
                if sample.name.hasSuffix("_sum") { histograms[key]?.sum = sample.value } else { histograms[key]?.count = sample.value }
            }
        }
        for key in histogramOrder {
            guard let histogram = histograms[key] else { continue }
            let name = String(key.prefix { $0 != "\u{0}" })
            samples.append(Self.entry(name, histogram.labels, Self.summary(count: histogram.count, sum: histogram.sum)))
        }
    }

    var json: JSON {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss Z 'UTC'"
        return .object(JSONObject([
            ("Timestamp", .string(formatter.string(from: Date()))),
            ("Gauges", .array(gauges)), ("Points", .array([])), ("Counters", .array(counters)), ("Samples", .array(samples)),
        ]))
    }

    private static func entry(_ name: String, _ labels: [(String, String)], _ fields: [(String, JSON)]) -> JSON {
        .object(JSONObject([("Name", .string(name))] + fields.map { (key: $0.0, value: $0.1) }
            + [("Labels", .object(JSONObject(labels.map { (key: $0.0, value: JSON.string($0.1)) })))]))
    }

    private static func summary(count: Double, sum: Double) -> [(String, JSON)] {
        [("Count", .int(Int64(count))), ("Rate", .double(0)), ("Sum", .double(sum)), ("Min", .double(0)),
         ("Max", .double(0)), ("Mean", .double(count > 0 ? sum / count : 0)), ("Stddev", .double(0))]
    }

    /// One sample line: `name{label="value",…} value`, with the exposition's escapes in label values.
    private static func parse(_ line: Substring) -> (name: String, labels: [(String, String)], value: Double)? {
        var rest = line[...]
        let name = rest.prefix { $0 != "{" && $0 != " " }
        rest = rest.dropFirst(name.count)
        var labels: [(String, String)] = []
        if rest.first == "{" {
            rest = rest.dropFirst()
            while let first = rest.first, first != "}" {
                if first == "," { rest = rest.dropFirst(); continue }
                let key = rest.prefix { $0 != "=" }
                rest = rest.dropFirst(key.count)
                guard rest.hasPrefix("=\"") else { return nil }
                rest = rest.dropFirst(2)
                var value = ""
                while let c = rest.first, c != "\"" {
                    rest = rest.dropFirst()
                    if c == "\\", let escaped = rest.first {
                        rest = rest.dropFirst()
                        value.append(escaped == "n" ? "\n" : escaped)
                    } else {
                        value.append(c)
                    }
                }
                rest = rest.dropFirst()
                labels.append((String(key), value))
            }
            rest = rest.dropFirst()
        }
        guard let value = Double(rest.trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "") else { return nil }
        return (String(name), labels, value)
    }
}
