@testable import Collector
import Telemetry
import XCTest

final class ScrapeManagerTests: XCTestCase {
    func testSelectorsAndRelabelling() throws {
        let selector = try LabelSelector.parse(#"up{job=~"trellis-.*", instance!="b", zone!~"eu.*"}"#)
        XCTAssertTrue(selector.matches([Label("__name__", "up"), Label("job", "trellis-sidecar"), Label("instance", "a")]))
        XCTAssertFalse(selector.matches([Label("__name__", "up"), Label("job", "other")]))
        XCTAssertFalse(selector.matches([Label("__name__", "up"), Label("job", "trellis-x"), Label("zone", "eu-1")]))
        XCTAssertThrowsError(try LabelSelector.parse(#"{a="b""#))
        XCTAssertThrowsError(try LabelSelector.parse(#"{a=~"("}"#))

        let families = try ExpositionParser.parse(Array("go_gc 1\nhttp_total{job=\"inner\"} 2\n".utf8))
        let target = ScrapeTarget(host: "127.0.0.1", port: 1, path: "/metrics", job: "orders", instance: "orders-1", service: "orders")
        let rules = [
            try RelabelRule(action: .drop, sourceLabels: ["__name__"], regex: "go_.*"),
            try RelabelRule(sourceLabels: ["instance"], regex: "(.*)-(\\d+)", targetLabel: "replica", replacement: "r${2}"),
        ]
        let (rendered, count) = ScrapeManager.label(families, target: target, relabel: rules)
        XCTAssertEqual(count, 2)
        XCTAssertEqual(rendered.map(\.name), ["http_total"])
        XCTAssertEqual(String(decoding: rendered[0].series[0].line, as: UTF8.self),
                       #"http_total{exported_job="inner",job="orders",instance="orders-1",service="orders",replica="r1"} 2"# + "\n")
    }
}
