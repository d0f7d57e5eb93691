@testable import Telemetry
import XCTest

final class ExpositionTests: XCTestCase {
    func testParsesEveryKindWithEscapesTimestampsAndSpecialValues() throws {
        let text = #"""
        # A free comment
        # HELP http_requests_total Requests with a \\ backslash and a \n newline.
        # TYPE http_requests_total counter
        http_requests_total{method="post",path="/a \"quoted\" \\ and\nnewline"} 1027 1395066363000
        http_requests_total{method="get",} 3
        # TYPE temperature gauge
        temperature -Inf
        temperature{room="b"} NaN
          # TYPE latency histogram
        latency_bucket{le="0.1"} 2
        latency_bucket{le="+Inf"} 3
        latency_sum 1.5e-3
        latency_count 3
        # TYPE rpc summary
        rpc{quantile="0.5"} 4.5
        rpc_sum	9
        rpc_count 2
        free_standing 1e+06
        """#
        let families = try ExpositionParser.parse(Array(text.utf8))
        XCTAssertEqual(families.map(\.name), ["http_requests_total", "temperature", "latency", "rpc", "free_standing"])
        XCTAssertEqual(families.map(\.type), [.counter, .gauge, .histogram, .summary, .untyped])
        XCTAssertEqual(families[0].help, "Requests with a \\ backslash and a \n newline.")
        XCTAssertEqual(families[0].samples[0].label("path"), "/a \"quoted\" \\ and\nnewline")
        XCTAssertEqual(families[0].samples[0].timestampMs, 1_395_066_363_000)
        XCTAssertEqual(families[0].samples[1].labels, [Label("method", "get")])
        XCTAssertEqual(families[1].samples[0].value, -.infinity)
        XCTAssertTrue(families[1].samples[1].value.isNaN)
        XCTAssertEqual(families[2].samples.map(\.name), ["latency_bucket", "latency_bucket", "latency_sum", "latency_count"])
        XCTAssertEqual(families[2].samples[2].value, 0.0015)
        XCTAssertEqual(families[3].samples.count, 3)
        XCTAssertEqual(families[4].samples[0].value, 1_000_000)
    }

    func testRejectsWhatPrometheusRejects() {
        let cases: [(String, String)] = [
            (#"m{a="x\q"} 1"#, "invalid escape"),
            (#"m{a="1",a="2"} 1"#, "duplicate label"),
            ("m 1\n# TYPE m counter", "after its samples"),
            ("# TYPE m counter\n# TYPE m gauge", "second TYPE"),
            ("# TYPE m fancy", "unknown metric type"),
            ("m one", "invalid value"),
            ("m 1 soon", "invalid timestamp"),
            (#"m{a="1"} 1 2 3"#, "after the timestamp"),
            ("# TYPE h histogram\nh_bucket 1", "\"le\""),
            ("# TYPE s summary\ns 1", "\"quantile\""),
            (#"m{a="open} 1"#, "closing quote"),
            ("1m 1", "invalid metric name"),
            (#"m{1a="x"} 1"#, "invalid label name"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try ExpositionParser.parse(Array(text.utf8)), text) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(text): \(error)")
            }
        }
    }

    func testWriterOutputParsesBackToTheSameFamilies() throws {
        var generator = SeededGenerator(seed: 42)
        let nasty = ["", "plain", "quote\"d", "back\\slash", "new\nline", "üñí©ødé", "{}=,\"\\\n"]
        for round in 0..<200 {
            var families: [MetricFamily] = []
            for index in 0..<Int.random(in: 1...5, using: &generator) {
                let type = MetricType.allCases.filter { $0 != .histogram && $0 != .summary }.randomElement(using: &generator)!
                var family = MetricFamily(name: "m\(round)_\(index)", help: Bool.random(using: &generator) ? nasty.randomElement(using: &generator) : nil, type: type)
                for sampleIndex in 0..<Int.random(in: 1...4, using: &generator) {
                    let values: [Double] = [0, -0.5, 1e-9, 123456789012, .infinity, -.infinity, .nan, Double.random(in: -1e6...1e6, using: &generator)]
                    family.samples.append(Sample(
                        name: family.name,
                        labels: [Label("i", String(sampleIndex)), Label("v", nasty.randomElement(using: &generator)!)],
                        value: values.randomElement(using: &generator)!,
                        timestampMs: Bool.random(using: &generator) ? Int64.random(in: 0...2_000_000_000_000, using: &generator) : nil))
                }
                families.append(family)
            }
            let parsed = try ExpositionParser.parse(Exposition.render(families))
            XCTAssertEqual(parsed.count, families.count)
            for (a, b) in zip(families, parsed) {
                XCTAssertEqual(a.name, b.name)
                XCTAssertEqual(a.help, b.help)
                XCTAssertEqual(a.type, b.type)
                XCTAssertEqual(a.samples.count, b.samples.count)
                for (x, y) in zip(a.samples, b.samples) {
                    XCTAssertEqual(x.labels, y.labels)
                    XCTAssertEqual(x.timestampMs, y.timestampMs)
                    XCTAssertTrue(x.value == y.value || (x.value.isNaN && y.value.isNaN), "\(x.value) vs \(y.value)")
                }
            }
        }
    }

    func testValuesAreWrittenAsPrometheusReadsThem() {
        func text(_ value: Double) -> String {
            var out: [UInt8] = []
            Exposition.writeValue(value, into: &out)
            return String(decoding: out, as: UTF8.self)
        }
        XCTAssertEqual(text(3), "3")
        XCTAssertEqual(text(-0.0), "-0")
        XCTAssertEqual(text(0.25), "0.25")
        XCTAssertEqual(text(.nan), "NaN")
        XCTAssertEqual(text(.infinity), "+Inf")
        XCTAssertEqual(text(-.infinity), "-Inf")
        XCTAssertEqual(text(1e300), "1e+300")
    }
}

/// SplitMix64: reproducible random cases.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
