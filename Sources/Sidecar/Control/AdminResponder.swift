import EventIO
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import Telemetry
import TrellisCore
import TrellisHTTP

/// The admin listener: `/metrics`, `/ready`, `/config` and `/clusters`.
final class AdminResponder: HTTPResponder {
    private let plane: ReactorBound<DataPlane>
    private let metrics: SidecarMetrics
    private let policy: PolicyState
    private let supervisor: ServiceSupervisor?
    private let localPort: Int
    private let healthPath: String?
    private let client: HTTPClient
    private let drainingFlag = Atomic(false)

    init(plane: ReactorBound<DataPlane>, metrics: SidecarMetrics, policy: PolicyState, supervisor: ServiceSupervisor?,
         localPort: Int, healthPath: String?, client: HTTPClient) {
        self.plane = plane
        self.metrics = metrics
        self.policy = policy
        self.supervisor = supervisor
        self.localPort = localPort
        self.healthPath = healthPath
        self.client = client
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
            return onDataPlane(eventLoop) { [metrics] plane in Self.refreshGauges(plane, metrics) }.map { [metrics] in
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: MetricsRegistry.contentType)
                return HTTPResponse(status: .ok, headers: headers, body: ByteBuffer(bytes: metrics.registry.render()))
            }
        case "/ready":
            let promise = eventLoop.makePromise(of: HTTPResponse.self)
            promise.completeWithTask { await self.readiness() }
            return promise.futureResult
        case "/config":
            let snapshot = policy.snapshot
            return onDataPlane(eventLoop) { Self.tls($0.mesh) }.map { tls in
                .json(JSON.object(JSONObject([("source", .string(snapshot.source)), ("policy", snapshot.policy.json), ("tls", tls)]))
                    .serialized(pretty: true))
            }
        case "/clusters":
            return onDataPlane(eventLoop) { Self.clusters($0) }.map { .json($0.serialized(pretty: true)) }
        default:
            return eventLoop.makeSucceededFuture(.text(.notFound, "unknown admin path \(request.path); try /metrics, /ready, /config, /clusters"))
        }
    }

    /// Runs `body` on the data plane's reactor; the result arrives on `eventLoop`.
    private func onDataPlane<T: Sendable>(_ eventLoop: any EventLoop, _ body: @escaping @Sendable (DataPlane) -> T) -> EventLoopFuture<T> {
        let promise = eventLoop.makePromise(of: T.self)
        plane.reactor.execute { [plane] in promise.succeed(body(plane.value)) }
        return promise.futureResult
    }

    /// 200 when the sidecar is not draining, the service process runs and answers locally.
    private func readiness() async -> HTTPResponse {
        if draining { return .text(.serviceUnavailable, "draining") }
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

    private static func refreshGauges(_ plane: DataPlane, _ metrics: SidecarMetrics) {
        let now = NIODeadline.now()
        for (listener, count) in plane.downstreamConnections {
            metrics.set("active_connections", help: "Open client connections per listener.",
                        labels: [("listener", listener.description)], to: count)
        }
        for listener in plane.listeners.values {
            let cluster = listener.cluster
            let upstream = [("upstream", cluster.name)]
            let idle = cluster.allPools.reduce(0) { $0 + $1.idleCount }
            metrics.set("upstream_connections", help: "Upstream connections by state.",
                        labels: upstream + [("state", "idle")], to: idle)
            metrics.set("upstream_connections", help: "Upstream connections by state.",
                        labels: upstream + [("state", "active")], to: cluster.limits.openConnections - idle)
            metrics.set("active_requests", help: "Requests in flight per upstream cluster.", labels: upstream, to: cluster.limits.activeRequests)
            metrics.set("pending_requests", help: "Requests waiting for an upstream connection.", labels: upstream, to: cluster.limits.pendingRequests)
            let limits = cluster.limits
            let open = limits.activeRequests >= limits.policy.maxRequests || limits.pendingRequests >= limits.policy.maxPendingRequests
                || limits.openConnections >= limits.policy.maxConnections
            metrics.set("circuit_breaker_open", help: "1 while a circuit breaker limit of the upstream is reached.", labels: upstream,
                        to: open ? 1 : 0)
            metrics.set("healthy_instances", help: "Passing instances known per upstream.", labels: upstream, to: cluster.endpoints.count)
            metrics.set("ejected_instances", help: "Instances currently ejected by outlier detection.", labels: upstream,
                        to: cluster.ejectedCount(now: now))
        }
    }

    private static func clusters(_ plane: DataPlane) -> JSON {
        let now = NIODeadline.now()
        var out = JSONObject()
        for (key, listener) in plane.listeners.sorted(by: { $0.key.description < $1.key.description }) {
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
