@testable import Collector
import ConsulClient
import XCTest

final class TargetDiscoveryTests: XCTestCase {
    /// Items of `/v1/catalog/service/:name` as Consul shapes them, fields the collector does not read included.
    private let answer = #"""
    [{"ID": "x", "Node": "n1", "Address": "10.0.0.1", "ServiceID": "web-1", "ServiceName": "web", "ServiceAddress": "",
      "ServicePort": 8080, "ServiceMeta": {"trellis_sidecar_admin_port": "9901", "metrics_path": "/metrics"},
      "ServiceTags": [], "ServiceWeights": {"Passing": 1, "Warning": 1}},
     {"Node": "n2", "Address": "10.0.0.2", "ServiceID": "web-2", "ServiceAddress": "192.0.2.2", "ServicePort": 0,
      "ServiceMeta": {"metrics_path": "/metrics"}}]
    """#

    func testSidecarAdminAndServiceMetricsTargetsFromTheCatalog() throws {
        let nodes = try Views.decode([CatalogServiceNode].self, from: Array(answer.utf8))
        let targets = nodes.flatMap { TargetDiscovery.targets(ofCatalogEntry: $0, service: "web") }
        XCTAssertEqual(targets, [
            ScrapeTarget(host: "10.0.0.1", port: 9901, path: "/metrics", job: "trellis-sidecar", instance: "web-1", service: "web"),
            ScrapeTarget(host: "10.0.0.1", port: 8080, path: "/metrics", job: "web", instance: "web-1", service: "web"),
        ], "the node address stands in for an empty service address; no port, no service target")
    }
}
