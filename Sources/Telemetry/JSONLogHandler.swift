import Foundation
import Logging
import TrellisCore

/// A swift-log handler that writes one JSON object per line to stderr: what log shippers and
/// Loki pipelines parse without rules (`ts`, `level`, `logger`, `msg`, then the metadata).
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object = JSONObject([
            ("ts", .string(Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(Date()))),
            ("level", .string(event.level.rawValue)),
            ("logger", .string(label)),
            ("msg", .string(event.message.description)),
        ])
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) { object.append(key, .string(value.description)) }
        var line = JSON.object(object).serialized()
        line.append(0x0A)
        FileHandle.standardError.write(Data(line))
    }
}
