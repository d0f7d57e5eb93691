import EventIO
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import Telemetry
import TrellisCore
import TrellisHTTP

/// The admin listener of a sidecar or a gateway: `/metrics`, `/ready`, `/config` and
/// `/clusters`, and on a gateway `/routes`. A gateway's workers each have a data plane: gauges
/// are their sums, `/clusters` lists each worker's.
final class AdminResponder: HTTPResponder {
    private let planes: [ReactorBound<DataPlane>]
    private let metrics: SidecarMetrics
    /// The policy in force and its source, as `/config` shows it.
    private let config: @Sendable () -> JSON
    /// Whatever readiness depends on besides draining: the service process for a sidecar.
    private let readiness: @Sendable () async -> HTTPResponse
    private let drainingFlag = Atomic(false)
    /// Whether `/routes` exists (a gateway).
    private let hasRoutes: Bool

    init(planes: [ReactorBound<DataPlane>], metrics: SidecarMetrics, hasRoutes: Bool = false, config: @escaping @Sendable () -> JSON,
         readiness: @escaping @Sendable () async -> HTTPResponse) {
        self.planes = planes
        self.hasRoutes = hasRoutes
        self.metrics = metrics
        self.config = config
        self.readiness = readiness
    }

    var draining: Bool {
        get { drainingFlag.load(ordering: .relaxed) }
        set { drainingFlag.store(newValue, ordering: .relaxed) }
    }

    func respond(to request: HTTPRequest, on eventLoop: any EventLoop, cancellation: CancellationSignal) -> EventLoopFuture<HTTPResponse> {
        guard request.method == .GET || request.method == .HEAD else {
            return eventLoop.makeSucceededFuture(.text(.methodNotAllowed, "admin endpoints are read-only (GET)"))
        }
        switch request.path {
        case "/metrics":
            return onDataPlanes(eventLoop) { Self.gauges($0) }.map { [metrics] snapshots in
                var sums: [Gauge: Int] = [:]
                for snapshot in snapshots { sums.merge(snapshot, uniquingKeysWith: +) }
                for (gauge, value) in sums { metrics.set(gauge.name, help: gauge.help, labels: gauge.labels, to: value) }
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: MetricsRegistry.contentType)
                return HTTPResponse(status: .ok, headers: headers, body: ByteBuffer(bytes: metrics.registry.render()))
            }
        case "/ready":
            let promise = eventLoop.makePromise(of: HTTPResponse.self)
            promise.completeWithTask { self.draining ? .text(.serviceUnavailable, "draining") : await self.readiness() }
            return promise.futureResult
        case "/config":
            let policy = config()
            return onDataPlanes(eventLoop) { Self.tls($0.mesh) }.map { tls in
                var object = policy.objectValue ?? JSONObject()
                object.append("tls", tls[0])
                return .json(JSON.object(object).serialized(pretty: true))
            }
        case "/clusters":
            return onDataPlanes(eventLoop) { Self.clusters($0) }.map { workers in
                .json((workers.count == 1 ? workers[0] : .array(workers)).serialized(pretty: true))
            }
        case "/routes" where hasRoutes:
            return onDataPlanes(eventLoop) { Self.routes($0) }.map { .json($0[0].serialized(pretty: true)) }
        default:
            return eventLoop.makeSucceededFuture(.text(.notFound, "unknown admin path \(request.path); try /metrics, /ready, /config, /clusters, /routes"))
        }
    }

    /// Runs `body` on every data plane's reactor; the results, in worker order, arrive on `eventLoop`.
    private func onDataPlanes<T: Sendable>(_ eventLoop: any EventLoop, _ body: @escaping @Sendable (DataPlane) -> T) -> EventLoopFuture<[T]> {
        let futures = planes.map { plane in
            let promise = eventLoop.makePromise(of: T.self)
            plane.reactor.execute { promise.succeed(body(plane.value)) }
            return promise.futureResult
        }
        return EventLoopFuture.whenAllSucceed(futures, on: eventLoop)
    }

    /// A sidecar's readiness: the service process runs and answers locally (with 2xx on `healthPath` when given).
    static func serviceReadiness(supervisor: ServiceSupervisor?, localPort: Int, healthPath: String?, client: HTTPClient) async -> HTTPResponse {
        if let supervisor, !supervisor.isRunning { return .text(.serviceUnavailable, "service process is not running") }
        do {
            let path = healthPath ?? "/"
            let response = try await client.send(.GET, host: "127.0.0.1", port: localPort, path: path, timeout: .seconds(1))
            if healthPath != nil && !(200..<300).contains(response.status.code) {
                return .text(.serviceUnavailable, "service health \(path) answered \(response.status.code)")
            }
            return .text(.ok, "ready")
        } catch {
            return .text(.serviceUnavailable, "service not answering on 127.0.0.1:\(localPort): \(error)")
        }
    }

    /// One gauge series: name, help and labels.
    struct Gauge: Hashable, Sendable {
        let name: String
        let help: String
        let labelPairs: [String]

        init(_ name: String, _ help: String, _ labels: [(String, String)]) {
            self.name = name
            self.help = help
            labelPairs = labels.flatMap { [$0.0, $0.1] }
        }

        var labels: [(String, String)] { stride(from: 0, to: labelPairs.count, by: 2).map { (labelPairs[$0], labelPairs[$0 + 1]) } }
    }

    private static func gauges(_ plane: DataPlane) -> [Gauge: Int] {
        let now = NIODeadline.now()
        var out: [Gauge: Int] = [:]
        for (listener, count) in plane.downstreamConnections {
            out[Gauge("active_connections", "Open client connections per listener.", [("listener", listener.description)]), default: 0] += count
        }
        for listener in plane.listeners.values where !listener.isEdge {
            let cluster = listener.cluster
            let upstream = [("upstream", cluster.name)]
            let idle = cluster.allPools.reduce(0) { $0 + $1.idleCount }
            let limits = cluster.limits
            let open = limits.activeRequests >= limits.policy.maxRequests || limits.pendingRequests >= limits.policy.maxPendingRequests
                || limits.openConnections >= limits.policy.maxConnections
            let values: [(Gauge, Int)] = [
                (Gauge("upstream_connections", "Upstream connections by state.", upstream + [("state", "idle")]), idle),
                (Gauge("upstream_connections", "Upstream connections by state.", upstream + [("state", "active")]), limits.openConnections - idle),
                (Gauge("active_requests", "Requests in flight per upstream cluster.", upstream), limits.activeRequests),
                (Gauge("pending_requests", "Requests waiting for an upstream connection.", upstream), limits.pendingRequests),
                (Gauge("circuit_breaker_open", "1 while a circuit breaker limit of the upstream is reached.", upstream), open ? 1 : 0),
                (Gauge("healthy_instances", "Passing instances known per upstream.", upstream), cluster.endpoints.count),
                (Gauge("ejected_instances", "Instances currently ejected by outlier detection.", upstream), cluster.ejectedCount(now: now)),
            ]
            for (gauge, value) in values { out[gauge, default: 0] += value }
        }
        return out
    }

    /// A gateway's rules as they are in force: matches, backends with their passing instances, auth.
    private static func routes(_ plane: DataPlane) -> JSON {
        guard let edge = plane.listeners[.edge] else { return .array([]) }
        return .array(edge.routes.compactMap { route in
            guard let rule = route.edge?.rule else { return nil }
            return .object(JSONObject([
                ("name", .string(rule.name)),
                ("matches", .array(rule.matches.map(\.json))),
                ("rewrite_prefix", rule.replacePrefix.map { .string($0) } ?? .null),
                ("rewrite_full_path", rule.replaceFullPath.map { .string($0) } ?? .null),
                ("backends", .array(route.backends.map { backend in
                    .object(JSONObject([("service", .string(backend.cluster.name)), ("weight", .int(Int64(backend.weight))),
                                        ("healthy_instances", .int(Int64(backend.cluster.endpoints.count)))]))
                })),
                ("auth", rule.auth.json),
                ("cors", .bool(rule.cors != nil)),
                // The limit this gateway enforces: a global limit's share of it.
                ("rate_limit", route.rateLimiter.map { limiter in
                    .object(JSONObject([("requests", .int(Int64(limiter.policy.requests))), ("burst", .int(Int64(limiter.policy.burst))),
                                        ("rate_per_second", .double(limiter.policy.rate)), ("global", .bool(limiter.policy.global))]))
                } ?? .null),
            ]))
        })
    }

    private static func clusters(_ plane: DataPlane) -> JSON {
        let now = NIODeadline.now()
        var out = JSONObject()
        for (key, listener) in plane.listeners.sorted(by: { $0.key.description < $1.key.description }) where !listener.isEdge {
            let cluster = listener.cluster
            let instances: [JSON] = cluster.endpoints.map { endpoint in
                let ejected = endpoint.isEjected(at: now)
                return .object(JSONObject([
                    ("id", .string(endpoint.info.id)),
                    ("address", .string(endpoint.info.address)),
                    ("weight", .int(Int64(endpoint.weight))),
                    ("tags", .strings(endpoint.info.tags)),
                    ("health", .string(ejected ? "ejected" : "healthy")),
                    ("ejected_for_ms", ejected ? .int((endpoint.ejectedUntil! - now).nanoseconds / 1_000_000) : .null),
                    ("ejections", .int(Int64(endpoint.ejections))),
                    ("active_requests", .int(Int64(endpoint.activeRequests))),
                    ("total_requests", .int(Int64(endpoint.totalRequests))),
                    ("failures", .int(Int64(endpoint.failures))),
                    ("connections", .int(Int64(endpoint.pool.openConnections))),
                    ("idle_connections", .int(Int64(endpoint.pool.idleCount))),
                    ("mtls", .bool(endpoint.info.mtls)),
                ]))
            }
            out.append(key.description, .object(JSONObject([
                ("direction", .string(listener.direction)),
                ("service", .string(cluster.name)),
                ("load_balancer", .string(cluster.policy.loadBalancer.kind.rawValue)),
                ("active_requests", .int(Int64(cluster.limits.activeRequests))),
                ("pending_requests", .int(Int64(cluster.limits.pendingRequests))),
                ("connections", .int(Int64(cluster.limits.openConnections))),
                ("instances", .array(instances)),
            ])))
        }
        out.append("tls", tls(plane.mesh))
        return .object(out)
    }

    /// The inbound mode and the leaf in use: its SPIFFE ID, serial and validity.
    private static func tls(_ mesh: MeshTLS) -> JSON {
        let format = Date.ISO8601FormatStyle()
        let leaf: JSON = mesh.identity.map { identity in
            .object(JSONObject([
                ("service_uri", .string(identity.serviceURI)), ("serial", .string(identity.serialNumber)),
                ("valid_after", .string(format.format(identity.validAfter))), ("valid_before", .string(format.format(identity.validBefore))),
            ]))
        } ?? .null
        return .object(JSONObject([("mode", .string(mesh.mode.rawValue)), ("leaf", leaf)]))
    }
}
