@testable import Sidecar
import XCTest

final class ServiceDiscoveryTests: XCTestCase {
    /// A `/v1/health/service/:name` answer as Consul shapes it, fields the sidecar does not read included.
    private let answer = #"""
    [{"Node": {"ID": "1", "Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1", "Meta": null},
      "Service": {"ID": "web-2", "Service": "web", "Tags": ["v2"], "Address": "", "Port": 8081, "Meta": {"weight": "3"},
                  "Weights": {"Passing": 1, "Warning": 1}, "Proxy": {"Mode": ""}},
      "Checks": [{"CheckID": "serfHealth", "Status": "passing", "Output": "", "Definition": {}}]},
     {"Node": {"Node": "n2", "Address": "10.0.0.2"},
      "Service": {"ID": "web-1", "Address": "192.0.2.1", "Port": 8080, "Tags": [], "Meta": {}}, "Checks": []},
     {"Node": {"Node": "n3", "Address": "10.0.0.3"},
      "Service": {"ID": "web-0", "Address": "", "Port": 0, "Tags": [], "Meta": {}}, "Checks": []}]
    """#

    func testInstancesComeFromTheHealthAnswerWithTheNodeAddressAsFallback() throws {
        let endpoints = try ServiceDiscovery.parse(Array(answer.utf8))
        XCTAssertEqual(endpoints.map(\.id), ["web-1", "web-2"], "sorted by ID; an instance without a port is left out")
        XCTAssertEqual(endpoints.map(\.host), ["192.0.2.1", "10.0.0.1"])
        XCTAssertEqual(endpoints.map(\.weight), [1, 3])
        XCTAssertEqual(endpoints.last?.tags, ["v2"])
    }

    func testAnAnswerThatIsNotAHealthListIsAnError() {
        XCTAssertThrowsError(try ServiceDiscovery.parse(Array(#"{"not": "a list"}"#.utf8)))
    }
}
