import Foundation
import Telemetry
import TrellisCore

/// Everything a collector runs with: flags, then its `--config` YAML.
public struct CollectorSettings: Sendable {
    public var httpHost = "127.0.0.1"
    public var httpPort = 9464
    public var dataDir = "./collector-data"
    public var registryHost = "127.0.0.1"
    public var registryPort = 8500
    /// The ACL token the collector presents to the registry, also on scrapes of the registry's `/metrics`.
    public var registryToken: String?
    public var loki: LokiTarget?
    /// From the config's `loki` section, for a URL given on the command line.
    public var lokiTenant: String?
    public var lokiFormat = LokiTarget.Format.protobuf
    public var scrape = ScrapeManager.Settings()
    public var staticTargets: [ScrapeTarget] = []
    public var limits = LogLimits()
    public var pipeline = LogPipeline()
    public var files: [FileSource] = []
    public var journal: (directory: String?, matches: [String])?
    /// Bytes of logs kept on disk for `query_range` once shipped (or always, without Loki).
    public var retentionBytes: UInt64 = 256 << 20
    public var batchBytes = 1 << 20
    public var batchWait: Duration = .seconds(1)
    /// The service name the collector registers under (sidecars find it by this name).

    public init() {}

    /// A setting that is wrong, named by its field path.
    public typealias Invalid = ConfigError

    /// Applies a `--config` YAML document; errors name the field.
    public mutating func apply(yaml text: String) throws(Invalid) {
        let config = try ConfigReader(yaml: text, allowed: ["scrape", "logs", "loki"])
        if let scrape = try config.map("scrape", allowed: ["interval", "timeout", "static_targets", "relabel"]) {
            if let interval = try scrape.duration("interval") { self.scrape.interval = interval }
            if let timeout = try scrape.duration("timeout") { self.scrape.timeout = timeout }
            for target in try scrape.list("static_targets", allowed: ["url", "job", "labels"]) {
                let url = try target.requiredString("url")
                guard let endpoint = HTTPEndpoint(url, defaultPath: "/metrics") else {
                    throw target.error("url", "must be an http:// URL, got \"\(url)\"")
                }
                staticTargets.append(ScrapeTarget(
                    host: endpoint.host, port: endpoint.port, path: endpoint.path,
                    job: try target.string("job") ?? "static", instance: HostPort.format(endpoint.host, endpoint.port), service: nil,
                    extra: try target.labels("labels")))
            }
            for rule in try scrape.list("relabel", allowed: ["action", "source_labels", "separator", "regex", "target_label", "replacement"]) {
                let actionName = try rule.string("action") ?? "replace"
                guard let action = RelabelRule.Action(rawValue: actionName) else {
                    throw rule.error("action", "must be replace, keep, drop, labeldrop or labelkeep")
                }
                let sources = try rule.strings("source_labels"), separator = try rule.string("separator") ?? ";"
                let regex = try rule.string("regex") ?? "(.*)", target = try rule.string("target_label")
                let replacement = try rule.string("replacement") ?? "$1"
                do {
                    self.scrape.relabel.append(try RelabelRule(action: action, sourceLabels: sources, separator: separator, regex: regex,
                                                               targetLabel: target, replacement: replacement))
                } catch {
                    throw ConfigError(path: rule.path, "\(error)")
                }
            }
        }
        if let logs = try config.map("logs", allowed: ["limits", "pipeline", "files", "journal", "retention_bytes"]) {
            if let retention = try logs.int("retention_bytes") { retentionBytes = UInt64(retention) }
            if let limits = try logs.map("limits", allowed: ["ingestion_rate_mb", "ingestion_burst_size_mb", "max_line_size",
                                                             "max_label_names_per_series"]) {
                if let rate = try limits.double("ingestion_rate_mb") { self.limits.ingestionRateBytes = rate * 1_048_576 }
                if let burst = try limits.double("ingestion_burst_size_mb") { self.limits.ingestionBurstBytes = burst * 1_048_576 }
                if let size = try limits.int("max_line_size") { self.limits.maxLineSize = size }
                if let count = try limits.int("max_label_names_per_series") { self.limits.maxLabelNamesPerSeries = count }
            }
            if let pipeline = try logs.map("pipeline", allowed: ["labels", "metadata", "rules"]) {
                if pipeline.has("labels") { self.pipeline.labelFields = try pipeline.strings("labels") }
                if pipeline.has("metadata") { self.pipeline.metadataFields = try pipeline.strings("metadata") }
                for rule in try pipeline.list("rules", allowed: ["match", "line_contains", "action", "rate"]) {
                    var selector: LabelSelector?
                    if let text = try rule.string("match") {
                        do { selector = try LabelSelector.parse(text) } catch { throw rule.error("match", "\(error)") }
                    }
                    let action: LogPipeline.Rule.Action
                    switch try rule.requiredString("action") {
                    case "drop": action = .drop
                    case "sample":
                        guard let rate = try rule.double("rate"), (0...1).contains(rate) else {
                            throw rule.error("rate", "sample needs a rate between 0 and 1")
                        }
                        action = .sample(rate)
                    default: throw rule.error("action", "must be drop or sample")
                    }
                    self.pipeline.rules.append(LogPipeline.Rule(selector: selector, lineContains: try rule.string("line_contains"), action: action))
                }
            }
            for file in try logs.list("files", allowed: ["path", "labels"]) {
                var labels = try file.labels("labels")
                if !labels.contains(where: { $0.name == "job" }) { labels.append(Label("job", "file")) }
                files.append(FileSource(path: try file.requiredString("path"), labels: labels))
            }
            if let journal = try logs.map("journal", allowed: ["enabled", "directory", "matches"]) {
                if try journal.bool("enabled") ?? true {
                    self.journal = (try journal.string("directory"), try journal.strings("matches"))
                }
            }
        }
        if let loki = try config.map("loki", allowed: ["url", "tenant", "format", "batch_bytes", "batch_wait"]) {
            lokiTenant = try loki.string("tenant")
            let format = try loki.string("format") ?? "protobuf"
            guard let parsedFormat = LokiTarget.Format(rawValue: format) else { throw loki.error("format", "must be protobuf or json") }
            lokiFormat = parsedFormat
            if let url = try loki.string("url") {
                do { self.loki = try LokiTarget(url: url, tenant: lokiTenant, format: lokiFormat) } catch {
                    throw loki.error("url", "\(error)")
                }
            }
            if let bytes = try loki.int("batch_bytes") { batchBytes = bytes }
            if let wait = try loki.duration("batch_wait") { batchWait = wait }
        }
    }
}

extension ConfigReader {
    /// Extra labels, by name.
    func labels(_ key: String) throws(ConfigError) -> [Label] {
        try stringMap(key).sorted { $0.key < $1.key }.map { pair throws(ConfigError) in
            guard PushValidator.isValidLabelName(pair.key) else { throw error("\(key).\(pair.key)", "is not a valid label name") }
            return Label(pair.key, pair.value)
        }
    }
}
