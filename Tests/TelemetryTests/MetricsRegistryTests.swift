import Prometheus
import Telemetry
import XCTest

final class MetricsRegistryTests: XCTestCase {
    func testInstrumentsAreNamedTrellisComponentNameUnit() {
        let registry = MetricsRegistry(component: "sidecar")
        registry.counter("retries", help: "Retries.", labels: [("upstream", "catalog")]).increment(by: Int64(3))
        registry.gauge("service_up", help: "Up.").set(Int64(1))
        registry.histogram("request_duration", help: "Durations.", buckets: [0.1, 1]).record(0.5)
        let text = String(decoding: registry.render(), as: UTF8.self)
        for line in [
            "# TYPE trellis_sidecar_retries_total counter",
            #"trellis_sidecar_retries_total{upstream="catalog"} 3"#,
            "trellis_sidecar_service_up 1.0",
            "# TYPE trellis_sidecar_request_duration_seconds histogram",
            #"trellis_sidecar_request_duration_seconds_bucket{le="0.1"} 0"#,
            #"trellis_sidecar_request_duration_seconds_bucket{le="1.0"} 1"#,
            #"trellis_sidecar_request_duration_seconds_bucket{le="+Inf"} 1"#,
            "trellis_sidecar_request_duration_seconds_count 1",
        ] {
            XCTAssertTrue(text.contains(line + "\n"), "missing \(line) in\n\(text)")
        }
    }

    func testTheCacheMakesOneInstrumentPerKey() {
        let registry = MetricsRegistry(component: "collector")
        let cache = InstrumentCache<Counter>()
        let make = { registry.counter("scrapes", help: "Scrapes.", labels: [("job", "a")]) }
        let first = cache.get("a", make: make)
        let again = cache.get("a", make: { XCTFail("made twice"); return make() })
        first.increment()
        again.increment()
        XCTAssertTrue(String(decoding: registry.render(), as: UTF8.self).contains(#"trellis_collector_scrapes_total{job="a"} 2"#))
    }
}
