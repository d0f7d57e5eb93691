import ConsulClient
import Foundation
import TrellisCore
import TrellisHTTP
import XCTest

/// Third-party Consul clients against the real registry.
final class ConsulClientTests: XCTestCase {
    /// VictoriaMetrics' `consul_sd_configs` (the same discovery protocol as Prometheus) finds and scrapes
    /// a service registered in the registry.
    func testVictoriaMetricsDiscoversRegisteredServices() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/victoria-metrics") else {
            throw XCTSkip("victoria-metrics is not installed (make test installs it)")
        }
        let registry = try await RegistryUnderTest.start(self)
        let registryPort = Int(registry.address.split(separator: ":").last!)!
        // The registry's own /metrics is the scrape target the service points at.
        _ = try await registry.put("/v1/agent/service/register", """
            {"Name": "registry-metrics", "ID": "rm1", "Address": "127.0.0.1", "Port": \(registryPort),
             "Tags": ["prod"], "Meta": {"metrics_path": "/metrics"}, "Check": {"TTL": "1h", "Status": "passing"}}
            """)
        let dir = try temporaryDirectory(self)
        let config = """
            scrape_configs:
              - job_name: consul
                scrape_interval: 1s
                consul_sd_configs:
                  - server: "\(registry.address)"
                    services: ["registry-metrics"]
                relabel_configs:
                  - source_labels: [__meta_consul_service]
                    target_label: service
                  - source_labels: [__meta_consul_service_metadata_metrics_path]
                    target_label: __metrics_path__
            """
        try config.write(toFile: dir + "/prometheus.yml", atomically: true, encoding: .utf8)
        let (_, vmClient) = try startVictoriaMetrics(directory: dir, test: self)
        try await eventually(timeout: 60, "VictoriaMetrics scrapes the discovered service") {
            guard let (status, _, body) = try? await vmClient.send("GET", "/api/v1/query?query=up%7Bservice%3D%22registry-metrics%22%7D"),
                  status == 200, let json = try? JSON.parse(body) else { return false }
            let result = json["data"]?["result"]?.arrayValue ?? []
            return result.contains { $0["value"]?[1] == .string("1") }
        }
        let (_, _, scraped) = try await vmClient.send("GET", "/api/v1/query?query=trellis_registry_service_instances")
        XCTAssertTrue(String(decoding: scraped, as: UTF8.self).contains("trellis_registry_service_instances"))
    }
}

extension ConsulClientTests {
    /// The shipped examples/prometheus/prometheus.yml, run by VictoriaMetrics (Debian's Prometheus is
    /// built without Consul discovery): its `consul-services` job finds a sidecar's admin port in the
    /// registry and scrapes it, and its `trellis` job scrapes the collector.
    func testShippedPrometheusConfigDiscoversSidecarsThroughTheRegistry() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/victoria-metrics") else {
            throw XCTSkip("victoria-metrics is not installed (make test installs it)")
        }
        let registry = try await RegistryUnderTest.start(self)
        let collector = try await CollectorUnderTest(self, registry: registry)
        let upstream = try await ScriptedHTTPServer(self)
        let sidecar = try await SidecarUnderTest(self, registry: registry, service: "catalog", localPort: upstream.port)
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let shipped = try String(contentsOf: root.appendingPathComponent("examples/prometheus/prometheus.yml"), encoding: .utf8)
        let dir = try temporaryDirectory(self)
        try shipped.replacingOccurrences(of: "127.0.0.1:8500", with: registry.address)
            .replacingOccurrences(of: "127.0.0.1:9464", with: collector.address)
            .replacingOccurrences(of: "scrape_interval: 15s", with: "scrape_interval: 1s")
            .write(toFile: dir + "/prometheus.yml", atomically: true, encoding: .utf8)
        let (vm, vmClient) = try startVictoriaMetrics(directory: dir, test: self)
        func series(_ query: String) async -> [JSON] {
            let escaped = query.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? query
            guard let (status, _, body) = try? await vmClient.send("GET", "/api/v1/query?query=\(escaped)"), status == 200,
                  let json = try? JSON.parse(body) else { return [] }
            return json["data"]?["result"]?.arrayValue ?? []
        }
        try await eventually(timeout: 60, "the sidecar is discovered in the registry and scraped") {
            guard vm.process.isRunning else { throw ProcessNeverPrinted(marker: "victoria-metrics keeps running (bad config?)", output: vm.output) }
            return await series(#"trellis_sidecar_service_up{job="consul-services",service="catalog",instance="catalog-\#(sidecar.port)"}"#).count == 1
        }
        try await eventually(timeout: 60, "the collector is scraped with its labels kept") {
            await !series(#"trellis_registry_checks{job="trellis-registry"}"#).isEmpty
        }
        let unscraped = await series(#"up{job="consul-services",service="trellis-collector"}"#)
        XCTAssertTrue(unscraped.isEmpty, "services without metrics are not scraped: \(unscraped)")
    }
}

/// VictoriaMetrics scraping with `<directory>/prometheus.yml`, and a client for its query API.
func startVictoriaMetrics(directory dir: String, test: XCTestCase) throws -> (ChildProcess, ConsulClient) {
    let port = try freeLoopbackPort()
    let vm = try ChildProcess("/usr/bin/victoria-metrics", [
        "-httpListenAddr=127.0.0.1:\(port)", "-storageDataPath=\(dir)/vm", "-promscrape.config=\(dir)/prometheus.yml",
        "-promscrape.consulSDCheckInterval=1s", "-loggerLevel=ERROR", "-search.latencyOffset=0s",
    ])
    test.addTeardownBlock { vm.kill9() }
    return (vm, ConsulClient(address: "127.0.0.1:\(port)"))
}

/// A loopback port that was free a moment ago.
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw XCTSkip("no free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}
