@testable import Collector
import Foundation
import Telemetry
import XCTest

final class LogTests: XCTestCase {
    private let now = Int64(Date().timeIntervalSince1970 * 1e9)

    private var sample: [LogStream] {
        [
            LogStream(labels: [Label("service", "orders"), Label("env", "dev")], entries: [
                LogEntry(timestampNs: now, line: "plain"),
                LogEntry(timestampNs: now + 1, line: "quote \" backslash \\ newline \n ünï", metadata: [Label("trace_id", "abc")]),
            ]),
            LogStream(labels: [Label("service", "users")], entries: [LogEntry(timestampNs: -1_500_000_000, line: "")]),
        ]
    }

    func testProtobufAndJSONPushesRoundTrip() throws {
        let protobuf = try PushCodec.decodeProtobuf(try Compression.snappyDecompress(Compression.snappyCompress(PushCodec.encodeProtobuf(sample)), limit: 1 << 20))
        XCTAssertEqual(protobuf, sample)
        let json = try PushCodec.decodeJSON(try Compression.decompress(Compression.compress(PushCodec.encodeJSON(sample)), limit: 1 << 20))
        XCTAssertEqual(json, sample)
        XCTAssertEqual(sample[0].labelString, #"{env="dev", service="orders"}"#)
    }

    func testMalformedPushesAreRefusedWithAReason() {
        XCTAssertThrowsError(try PushCodec.decodeJSON(Array(#"{"streams":[{"stream":{"a":"b"},"values":[[1.5,"x"]]}]}"#.utf8))) {
            XCTAssertTrue("\($0)".contains("timestamp"), "\($0)")
        }
        XCTAssertThrowsError(try PushCodec.decodeJSON(Array(#"{"streams":[{"stream":{"a":1},"values":[]}]}"#.utf8)))
        XCTAssertThrowsError(try PushCodec.decodeJSON(Array("{".utf8)))
        XCTAssertThrowsError(try Compression.snappyDecompress([0xFF, 0xFF, 0xFF], limit: 100))
        XCTAssertThrowsError(try Compression.decompress(Array("not gzip".utf8), limit: 100))
        var writer = ProtoWriter()
        writer.messageField(1) { $0.stringField(1, "{service=orders}") }
        XCTAssertThrowsError(try PushCodec.decodeProtobuf(writer.bytes)) {
            XCTAssertTrue("\($0)".hasPrefix("Error parsing labels '{service=orders}' with error:"), "\($0)")
        }
        XCTAssertThrowsError(try PushCodec.decodeProtobuf([0x0A, 0x05, 0x01]))
    }

    func testValidatorKeepsValidLinesAndReportsLokiReasons() {
        var limits = LogLimits()
        limits.maxLineSize = 10
        let validator = PushValidator(limits: limits)
        let outcome = validator.validate([
            LogStream(labels: [], entries: [LogEntry(timestampNs: now, line: "no labels")]),
            LogStream(labels: [Label("a", "1")], entries: [
                LogEntry(timestampNs: now, line: "ok"),
                LogEntry(timestampNs: now, line: "much too long"),
                LogEntry(timestampNs: now - 8 * 24 * 3_600_000_000_000, line: "old"),
                LogEntry(timestampNs: now + 3_600_000_000_000, line: "future"),
            ]),
            LogStream(labels: [Label("a", "1"), Label("a", "2")], entries: [LogEntry(timestampNs: now, line: "dup")]),
            LogStream(labels: [Label("bad-name", "1")], entries: [LogEntry(timestampNs: now, line: "x")]),
        ])
        XCTAssertEqual(outcome.accepted.map { $0.entries.map(\.line) }, [["ok"]])
        XCTAssertEqual(outcome.rejected, ["missing_labels": 1, "line_too_long": 1, "greater_than_max_sample_age": 1,
                                          "too_far_in_future": 1, "duplicate_label_names": 1, "invalid_labels": 1])
        XCTAssertTrue(outcome.errors.contains("error at least one label pair is required per stream"))
        XCTAssertTrue(outcome.errors.contains { $0.hasPrefix("Max entry size '10' bytes exceeded for stream '{a=\"1\"}'") })
    }

    func testIngestionLimiterAdmitsTheBurstThenRefuses() {
        let limiter = IngestionLimiter(bytesPerSecond: 1000, burstBytes: 2000)
        XCTAssertTrue(limiter.admit(tenant: "t", bytes: 1500))
        XCTAssertFalse(limiter.admit(tenant: "t", bytes: 1000))
        XCTAssertTrue(limiter.admit(tenant: "other", bytes: 2000))
    }

    func testPipelineLiftsLabelsKeepsTraceIDAndAppliesRules() throws {
        var pipeline = LogPipeline()
        pipeline.rules = [
            LogPipeline.Rule(selector: try LabelSelector.parse(#"{level="debug"}"#), action: .drop),
            LogPipeline.Rule(lineContains: "healthz", action: .sample(0)),
        ]
        let input = LogStream(labels: [Label("job", "x")], entries: [
            LogEntry(timestampNs: 1, line: #"{"level":"INFO","service":"orders","trace_id":"t1","msg":"a"}"#),
            LogEntry(timestampNs: 2, line: #"level=warn service=orders trace_id="t 2" msg="quoted \" value""#),
            LogEntry(timestampNs: 3, line: #"{"level":"debug","msg":"noise"}"#),
            LogEntry(timestampNs: 4, line: "GET /healthz 200"),
            LogEntry(timestampNs: 5, line: "not structured at all"),
        ])
        let result = pipeline.process([input])
        XCTAssertEqual(result.dropped, 2)
        XCTAssertEqual(result.streams.map(\.labelString), [
            #"{job="x", level="info", service="orders"}"#, #"{job="x", level="warn", service="orders"}"#, #"{job="x"}"#,
        ])
        XCTAssertEqual(result.streams[0].entries[0].metadata, [Label("trace_id", "t1")])
        XCTAssertEqual(result.streams[1].entries[0].metadata, [Label("trace_id", "t 2")])
    }

    func testBufferSurvivesATornTailRotatesAndTrims() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("buffer-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var buffer = try LogBuffer(directory: directory, segmentBytes: 100)
        var ends: [BufferPosition] = []
        for index in 0..<10 { ends.append(try await buffer.append(Array("record-\(index)-".utf8) + [UInt8](repeating: 7, count: 40))) }
        XCTAssertEqual(try buffer.read(from: buffer.start, maxBytes: .max).count, 10)
        XCTAssertGreaterThan(buffer.sizes(after: buffer.start).total, 0)
        let fromFourth = try buffer.read(from: ends[3], maxBytes: .max)
        XCTAssertEqual(fromFourth.map { String(decoding: $0.payload.prefix(8), as: UTF8.self) }, (4..<10).map { "record-\($0)" })
        let newest = LogBuffer.path(directory, buffer.end.segment)
        buffer.close()

        // A half-written record at the end is cut off on open; earlier ones stay.
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: newest))
        try handle.seekToEnd()
        try handle.write(contentsOf: [200, 0, 0, 0, 1, 2, 3, 4, 5])
        try handle.close()
        buffer = try LogBuffer(directory: directory, segmentBytes: 100)
        XCTAssertEqual(try buffer.read(from: buffer.start, maxBytes: .max).count, 10)
        _ = try await buffer.append(Array("after".utf8))
        XCTAssertEqual(try buffer.read(from: buffer.start, maxBytes: .max).last.map { String(decoding: $0.payload, as: UTF8.self) }, "after")

        // Trimming never removes what is not shipped, and keeps the newest segments within retention.
        let before = try buffer.read(from: buffer.start, maxBytes: .max).count
        buffer.trim(shipped: buffer.start, retentionBytes: 0)
        XCTAssertEqual(try buffer.read(from: buffer.start, maxBytes: .max).count, before)
        buffer.trim(shipped: buffer.end, retentionBytes: 0)
        XCTAssertEqual(try buffer.read(from: buffer.start, maxBytes: .max).map { String(decoding: $0.payload, as: UTF8.self) }, ["after"])
        buffer.close()
    }

    func testLogQueryParsingAndLineFilters() throws {
        let query = try LogQuery.parse(#"{service="orders", level=~"warn|error"} |= "trace" != `debug`"#)
        XCTAssertTrue(query.selector.matches([Label("service", "orders"), Label("level", "warn")]))
        XCTAssertTrue(query.accepts(line: "has trace id"))
        XCTAssertFalse(query.accepts(line: "trace but debug"))
        XCTAssertThrowsError(try LogQuery.parse("{}"))
        XCTAssertThrowsError(try LogQuery.parse(#"{a="b"} | json"#))
        XCTAssertThrowsError(try LogQueryService.request { ["query": #"{a="b"}"#, "limit": "0"][$0] })
        let request = try LogQueryService.request { ["query": #"{a="b"}"#, "start": "1700000000", "end": "2023-11-14T22:13:20Z"][$0] }
        XCTAssertEqual(request.startNs, 1_700_000_000_000_000_000)
        XCTAssertEqual(request.endNs, 1_700_000_000_000_000_000)
        XCTAssertFalse(request.forward)
    }

    func testConfigErrorsNameTheField() {
        let cases: [(String, String)] = [
            ("scrape:\n  interval: soon", "scrape.interval"),
            ("scrape:\n  static_targets:\n    - job: x", "scrape.static_targets[0].url"),
            ("scrape:\n  relabel:\n    - action: explode", "scrape.relabel[0].action"),
            ("logs:\n  pipeline:\n    rules:\n      - action: sample\n        rate: 2", "logs.pipeline.rules[0].rate"),
            ("logs:\n  colour: blue", "logs.colour"),
            ("loki:\n  url: ftp://x", "loki.url"),
        ]
        for (yaml, field) in cases {
            var settings = CollectorSettings()
            XCTAssertThrowsError(try settings.apply(yaml: yaml), yaml) { XCTAssertTrue("\($0)".hasPrefix(field), "\($0)") }
        }
        var settings = CollectorSettings()
        XCTAssertNoThrow(try settings.apply(yaml: """
            scrape: {interval: 1s, static_targets: [{url: "http://127.0.0.1:9100/metrics", job: node, labels: {env: dev}}]}
            logs: {files: [{path: /var/log/app.log}], limits: {ingestion_rate_mb: 4}}
            loki: {url: "http://127.0.0.1:3100", format: json}
            """))
        XCTAssertEqual(settings.staticTargets.first?.labels, [Label("job", "node"), Label("instance", "127.0.0.1:9100"), Label("env", "dev")])
        XCTAssertEqual(settings.loki?.path, "/loki/api/v1/push")
    }
}
