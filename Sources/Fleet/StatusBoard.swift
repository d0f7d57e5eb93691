import ConsulClient
import Foundation
import Telemetry
import TrellisCore
import TrellisHTTP

/// Instance health as the registry sees it, by instance id.
enum RegistryHealth {
    static func fetch(registry: String, token: String?, services: [String]) async -> [String: HealthStatus] {
        let client = ConsulClient(address: registry, token: token)
        var health: [String: HealthStatus] = [:]
        for service in services {
            guard let (status, _, body) = try? await client.send("GET", "/v1/health/service/\(URLPath.escape(service))", timeout: 2),
                  status == 200, let entries = try? Views.decode([ServiceHealth].self, from: body) else { continue }
            for entry in entries { health[entry.service.id] = entry.status }
        }
        return health
    }
}

/// The live status of a fleet, refreshed every second: per instance its port, health, requests
/// per second, 5xx answers and service restarts. On a terminal the table is redrawn in place;
/// otherwise each change of health or restarts is printed as one line.
public final class StatusBoard: Sendable {
    struct Row: Equatable {
        var health = "starting"
        var requestsPerSecond = 0.0
        var errors = 0.0
        var restarts = 0.0
    }

    private struct Counters {
        var requests = 0.0
        var errors = 0.0
        var restarts = 0.0
        var serviceUp = true
    }

    private let fleet: Fleet
    private let terminal: Bool
    private let write: @Sendable (String) -> Void

    public init(fleet: Fleet, terminal: Bool, write: @escaping @Sendable (String) -> Void) {
        self.fleet = fleet
        self.terminal = terminal
        self.write = write
    }

    /// Refreshes every second until the task is cancelled.
    public func run() async {
        var previous: [String: (Counters, ContinuousClock.Instant)] = [:]
        var shown: [String: Row] = [:]
        var drawnLines = 0
        while !Task.isCancelled {
            let health = await RegistryHealth.fetch(registry: fleet.registryAddress, token: fleet.managementToken,
                                                    services: fleet.topology.services.map(\.name))
            var rows: [String: Row] = [:]
            for instance in fleet.instances {
                let now = ContinuousClock.now
                let counters = await Self.counters(adminPort: instance.adminPort)
                var row = Row()
                if let counters {
                    if let (before, at) = previous[instance.id] {
                        let seconds = (now - at) / .seconds(1)
                        row.requestsPerSecond = max(0, counters.requests - before.requests) / max(seconds, 0.001)
                    }
                    row.errors = counters.errors
                    row.restarts = counters.restarts
                    previous[instance.id] = (counters, now)
                }
                row.health = !instance.isRunning ? "sidecar exited"
                    : counters?.serviceUp == false ? "restarting"
                    : health[instance.id]?.rawValue ?? "starting"
                rows[instance.id] = row
            }
            if terminal {
                let lines = table(rows)
                write((drawnLines > 0 ? "\u{1B}[\(drawnLines)F\u{1B}[J" : "") + lines.joined(separator: "\n") + "\n")
                drawnLines = lines.count
            } else {
                for instance in fleet.instances {
                    guard let row = rows[instance.id], shown[instance.id].map({ $0.health != row.health || $0.restarts != row.restarts }) ?? true
                    else { continue }
                    write("\(instance.id) port \(instance.port) health \(row.health) restarts \(Int(row.restarts))\n")
                }
                shown = rows
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private func table(_ rows: [String: Row]) -> [String] {
        var cells = [["SERVICE", "INSTANCE", "PORT", "HEALTH", "REQ/S", "5XX", "RESTARTS"]]
        for instance in fleet.instances {
            let row = rows[instance.id] ?? Row()
            cells.append([instance.service, instance.id, String(instance.port), row.health,
                          String(format: "%.1f", row.requestsPerSecond), String(Int(row.errors)), String(Int(row.restarts))])
        }
        let daemons = "registry \(fleet.registryAddress)\(fleet.registryRunning ? "" : " (exited)") · collector \(fleet.collectorAddress)"
            + (fleet.collectorRunning ? "" : " (exited)") + " · Ctrl-C stops"
        return [daemons] + TextTable.lines(cells)
    }

    /// Inbound requests, inbound 5xx, restarts and whether the service runs, from the sidecar's /metrics.
    private static func counters(adminPort: Int) async -> Counters? {
        guard let (status, _, body) = try? await ConsulClient(address: "127.0.0.1:\(adminPort)").send("GET", "/metrics", timeout: 1),
              status == 200, let families = try? ExpositionParser.parse(body) else { return nil }
        var counters = Counters()
        for family in families {
            for sample in family.samples {
                switch sample.name {
                case "trellis_sidecar_requests_total":
                    guard sample.labels.contains(where: { $0.name == "direction" && $0.value == "inbound" }) else { continue }
                    counters.requests += sample.value
                    if sample.labels.contains(where: { $0.name == "code_class" && $0.value == "5xx" }) { counters.errors += sample.value }
                case "trellis_sidecar_service_restarts_total": counters.restarts = sample.value
                case "trellis_sidecar_service_up": counters.serviceUp = sample.value == 1
                default: continue
                }
            }
        }
        return counters
    }
}
