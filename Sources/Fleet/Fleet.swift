// Fleet: a whole topology on one machine (`trellis up`): topology files, the daemons started as
// processes (it links none of their libraries), and the live status table.

import ConsulClient
import Foundation
import Logging
import Policy
import TrellisCore
import TrellisHTTP

/// Starts a topology's processes in order — registry, policies, collector, one sidecar per replica
/// (each launching its service) — and stops them in the reverse order.
public final class Fleet: Sendable {
    /// One replica of a service: its sidecar's ports and process.
    public struct Instance: Sendable {
        public let service: String
        public let id: String
        public let port: Int
        public let adminPort: Int
        let process: ChildProcess

        public var isRunning: Bool { process.isRunning }
    }

    public let topology: Topology
    public let registryPort: Int
    public let collectorPort: Int
    /// The registry's DNS port: Consul's 8600 when it was free at start, else none.
    public let dnsPort: Int?
    public let instances: [Instance]
    private let registry: ChildProcess
    /// The public entry's ports, when the topology has one.
    public let gateway: (port: Int, adminPort: Int)?
    private let gatewayProcess: ChildProcess?
    private let collector: ChildProcess
    /// With ACLs on: the management token and the file that holds it (named in `endpoints.env`).
    public let managementTokenFile: String?
    let managementToken: String?

    public var registryAddress: String { "127.0.0.1:\(registryPort)" }
    public var collectorAddress: String { "127.0.0.1:\(collectorPort)" }

    /// Starts everything and waits until the registry and the collector answer. Fails (having
    /// stopped what it started) if a fixed port is taken or a daemon does not come up.
    public static func start(_ topology: Topology, trellis: String, logger: Logger) async throws -> Fleet {
        let data = URL(fileURLWithPath: topology.dataDir).standardized.path
        let ports = try PortPlan(topology)
        do {
            for directory in ["registry", "collector", "logs", "services"] {
                try FileManager.default.createDirectory(atPath: "\(data)/\(directory)", withIntermediateDirectories: true)
            }
        } catch {
            ports.releaseAll()
            throw error
        }
        var started: [ChildProcess] = []
        func launch(_ name: String, _ arguments: [String], in directory: String) throws -> ChildProcess {
            let child = try ChildProcess(name: name, executable: trellis, arguments: arguments, directory: directory,
                                         logFile: "\(data)/logs/\(name).log")
            started.append(child)
            return child
        }
        do {
            ports.releaseAll()
            let registryAddress = "127.0.0.1:\(ports.registry)"
            let dns = ports.dns.map { ["--dns-addr", "127.0.0.1:\($0)"] } ?? []
            // Every process of the fleet reaches the registry from 127.0.0.1: no per-client connection cap.
            let acl = topology.acl ? try FleetACL(dataDirectory: data) : nil
            let registry = try launch("registry", ["registry", "--http-addr", registryAddress, "--data-dir", "\(data)/registry",
                                                   "--log-format", "json", "--http-max-conns-per-client", "0"]
                                                  + dns + (acl?.registryArguments ?? []),
                                      in: "\(data)/registry")
            try await waitUntilAnswering(registryAddress, "/v1/status/leader", process: registry)
            logger.info("registry up", metadata: ["address": "\(registryAddress)", "acl": "\(acl == nil ? "off" : "default deny")"])
            let management = ConsulClient(address: registryAddress, token: acl?.managementToken)
            try await applyPolicies(topology, registry: management)
            if acl != nil { try await allowUpstreamCalls(topology, registry: management) }
            if let acl, ports.dns != nil { try await acl.enableDNS(registry: registryAddress) }

            var collectorArguments = ["collector", "--http-addr", "127.0.0.1:\(ports.collector)", "--data-dir", "\(data)/collector",
                                      "--registry", registryAddress, "--log-format", "json"]
            if let acl { collectorArguments += ["--token-file", try await acl.collectorToken(registry: registryAddress)] }
            if let config = topology.collectorConfig { collectorArguments += ["--config", config] }
            let collector = try launch("collector", collectorArguments, in: "\(data)/collector")
            try await waitUntilAnswering("127.0.0.1:\(ports.collector)", "/ready", process: collector)
            logger.info("collector up", metadata: ["address": "127.0.0.1:\(ports.collector)"])

            var instances: [Instance] = []
            for (service, replicaPorts) in zip(topology.services, ports.replicas) {
                let directory = "\(data)/services/\(service.name)"
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                let tokenFile = try await acl?.sidecarToken(service.name, registry: registryAddress)
                for (index, (port, admin)) in replicaPorts.enumerated() {
                    let id = "\(service.name)-\(index + 1)"
                    var arguments = ["sidecar", "--service", service.name, "--id", id, "--port", String(port), "--admin-port", String(admin),
                                     "--registry", registryAddress, "--collector", "127.0.0.1:\(ports.collector)",
                                     "--drain-timeout", "5s", "--log-format", "json"]
                    arguments += service.upstreams.flatMap { ["--upstream", $0] }
                    arguments += service.tags(ofReplica: index).flatMap { ["--tag", $0] }
                    arguments += service.meta.flatMap { ["--meta", "\($0.key)=\($0.value)"] }
                    if let path = service.healthPath { arguments += ["--health-path", path] }
                    arguments += ["--mtls", service.mtls]
                    if let tokenFile { arguments += ["--token-file", tokenFile] }
                    arguments += ["--"] + service.command
                    instances.append(Instance(service: service.name, id: id, port: port, adminPort: admin,
                                              process: try launch(id, arguments, in: directory)))
                }
            }
            var gateway: (process: ChildProcess, port: Int, adminPort: Int)?
            if let settings = topology.gateway, let (port, admin) = ports.gateway {
                var arguments = ["gateway", "--name", settings.name, "--port", String(port), "--admin-port", String(admin),
                                 "--address", "127.0.0.1", "--workers", String(settings.workers), "--registry", registryAddress,
                                 "--log-format", "json"]
                if let acl { arguments += ["--token-file", try await acl.gatewayToken(settings.name, registry: registryAddress)] }
                let directory = "\(data)/gateway"
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                gateway = (try launch(settings.name, arguments, in: directory), port, admin)
                try await waitUntilAnswering("127.0.0.1:\(admin)", "/ready", process: gateway!.process)
                logger.info("gateway up", metadata: ["address": "127.0.0.1:\(port)"])
            }
            return Fleet(topology: topology, registryPort: ports.registry, collectorPort: ports.collector, dnsPort: ports.dns,
                         instances: instances, gateway: gateway, registry: registry, collector: collector,
                         managementTokenFile: acl?.managementTokenFile, managementToken: acl?.managementToken)
        } catch {
            for child in started.reversed() { await child.stop(grace: .seconds(5)) }
            throw error
        }
    }

    private init(topology: Topology, registryPort: Int, collectorPort: Int, dnsPort: Int?, instances: [Instance],
                 gateway: (process: ChildProcess, port: Int, adminPort: Int)?, registry: ChildProcess, collector: ChildProcess,
                 managementTokenFile: String?, managementToken: String?) {
        self.gateway = gateway.map { ($0.port, $0.adminPort) }
        gatewayProcess = gateway?.process
        self.managementTokenFile = managementTokenFile
        self.managementToken = managementToken
        self.topology = topology
        self.registryPort = registryPort
        self.collectorPort = collectorPort
        self.dnsPort = dnsPort
        self.instances = instances
        self.registry = registry
        self.collector = collector
    }

    public var registryRunning: Bool { registry.isRunning }
    public var collectorRunning: Bool { collector.isRunning }

    /// The gateway first (it drains its clients), then the sidecars (each deregisters, drains and
    /// stops its service), then the collector (which flushes its buffer), then the registry.
    /// Whatever does not stop in time is killed.
    public func stop() async {
        await gatewayProcess?.stop(grace: .seconds(12))
        await withTaskGroup(of: Void.self) { group in
            for instance in instances { group.addTask { await instance.process.stop(grace: .seconds(12)) } }
        }
        // A service whose sidecar was killed outlives it; every service runs in the data directory.
        for pid in ChildProcess.working(under: servicesDirectory) { kill(pid, SIGKILL) }
        await collector.stop(grace: .seconds(10))
        await registry.stop(grace: .seconds(10))
    }

    private var servicesDirectory: String { URL(fileURLWithPath: topology.dataDir).standardized.path + "/services" }

    /// Waits for every instance to pass its checks (or `timeout`, or cancellation); answers the ids still not passing.
    public func waitUntilPassing(timeout: Duration) async -> [String] {
        let deadline = ContinuousClock.now + timeout
        var missing = instances.map(\.id)
        while !missing.isEmpty && ContinuousClock.now < deadline && !Task.isCancelled {
            let health = await RegistryHealth.fetch(registry: registryAddress, token: managementToken,
                                                    services: topology.services.map(\.name))
            missing = instances.map(\.id).filter { health[$0] != .passing }
            if !missing.isEmpty { try? await Task.sleep(for: .milliseconds(250)) }
        }
        return missing
    }

    /// Lines for a shell to source: where the registry, the collector and each service answer.
    public func endpointsFile() -> String {
        var lines = ["TRELLIS_ADDR=\(registryAddress)", "CONSUL_HTTP_ADDR=\(registryAddress)", "TRELLIS_COLLECTOR_ADDR=\(collectorAddress)"]
        if let managementTokenFile { lines.append("CONSUL_HTTP_TOKEN_FILE=\(managementTokenFile)") }
        if let dnsPort { lines.append("TRELLIS_DNS_ADDR=127.0.0.1:\(dnsPort)") }
        if let gateway { lines.append("GATEWAY_URL=http://127.0.0.1:\(gateway.port)") }
        for service in topology.services {
            guard let first = instances.first(where: { $0.service == service.name }) else { continue }
            let variable = service.name.uppercased().replacingOccurrences(of: "-", with: "_")
            lines.append("\(variable)_URL=http://127.0.0.1:\(first.port)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Stores each service's policy and the gateway's in the registry KV, where they are followed.
    private static func applyPolicies(_ topology: Topology, registry client: ConsulClient) async throws {
        var stored = topology.services.compactMap { service in service.policyText.map { (service.name, SidecarPolicy.kvPath(for: service.name), $0) } }
        if let gateway = topology.gateway, let text = gateway.policyText { stored.append((gateway.name, GatewayPolicy.kvPath(for: gateway.name), text)) }
        for (owner, path, text) in stored {
            let (status, _, body) = try await client.send("PUT", path, body: Array(text.utf8))
            guard status == 200 else {
                throw ConfigError(description: "storing the policy of \(owner) failed: \(status) \(String(decoding: body, as: UTF8.self))")
            }
        }
    }

    /// Under default-deny ACLs intentions deny by default: one `allow` intention per upstream edge
    /// of the topology (and per backend of the gateway) lets each caller reach exactly what it names.
    private static func allowUpstreamCalls(_ topology: Topology, registry client: ConsulClient) async throws {
        var edges = topology.services.flatMap { service in service.upstreams.map { (service.name, $0) } }
        if let gateway = topology.gateway { edges += gateway.backends.map { (gateway.name, $0) } }
        for (source, destination) in edges {
            let path = "/v1/connect/intentions/exact?source=\(URLPath.escapeQueryValue(source))"
                + "&destination=\(URLPath.escapeQueryValue(destination))"
            let body = JSON.object(JSONObject([("Action", .string("allow")), ("Description", .string("trellis up: an upstream of the topology"))]))
            try await client.expectOK(.PUT, path, body: body.serialized())
        }
    }

    private static func waitUntilAnswering(_ address: String, _ path: String, process: ChildProcess) async throws {
        let client = ConsulClient(address: address)
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw ConfigError(description: "\(process.name) exited at start; see its log in the data directory's logs/")
            }
            if let (status, _, _) = try? await client.send("GET", path, timeout: 2), status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ConfigError(description: "\(process.name) did not answer http://\(address)\(path) within 30 s")
    }
}

/// The ports of a fleet, held until the processes are about to start.
private struct PortPlan {
    let registry: Int
    let collector: Int
    /// Consul's DNS port, when nothing holds it.
    let dns: Int?
    /// Public and admin port of each replica, per service.
    let replicas: [[(Int, Int)]]
    /// Public and admin port of the gateway, when there is one.
    let gateway: (Int, Int)?
    private let held: [HeldPort]

    init(_ topology: Topology) throws(ConfigError) {
        var held: [HeldPort] = []
        func take(_ port: Int?, _ owner: String) throws(ConfigError) -> Int {
            do {
                let port = try HeldPort.hold(port ?? 0, for: owner)
                held.append(port)
                return port.port
            } catch {
                held.forEach { $0.release() }
                throw error
            }
        }
        registry = try take(topology.registryPort, "registry")
        collector = try take(topology.collectorPort, "collector")
        if let port = try? HeldPort.holdTCPAndUDP(Self.consulDNSPort, for: "registry DNS") {
            held.append(port)
            dns = port.port
        } else {
            dns = nil
        }
        var replicas: [[(Int, Int)]] = []
        for service in topology.services {
            var ports: [(Int, Int)] = []
            for index in 1...service.replicas {
                ports.append((try take(nil, "\(service.name)-\(index)"), try take(nil, "\(service.name)-\(index) admin")))
            }
            replicas.append(ports)
        }
        self.replicas = replicas
        gateway = try topology.gateway.map { settings throws(ConfigError) in
            (try take(settings.port, "gateway \(settings.name)"), try take(nil, "gateway \(settings.name) admin"))
        }
        self.held = held
    }

    func releaseAll() { held.forEach { $0.release() } }

    static let consulDNSPort = 8600
}
