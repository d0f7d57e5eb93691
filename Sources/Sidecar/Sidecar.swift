// Sidecar: the proxy beside each service: the request path (Proxy/), discovery, live policy and
// admin endpoints (Control/), and supervision of the service process (Supervisor/).

import ConsulClient
import EventIO
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import TrellisCore
import TrellisHTTP

/// One sidecar: proxies, registration, discovery, live policy, admin endpoints and the supervised
/// service, started together and drained in order on shutdown.
public final class Sidecar: Service {
    private let settings: SidecarSettings
    private let logger: Logger
    private let onReady: @Sendable (String) -> Void
    public let metrics = SidecarMetrics()

    /// - Parameter onReady: receives the startup banner (ports and upstream URLs) once listening.
    public init(settings: SidecarSettings, logger: Logger, onReady: @escaping @Sendable (String) -> Void) {
        self.settings = settings
        self.logger = logger
        self.onReady = onReady
    }

    public func run() async throws {
        // Two descriptors per proxied connection (client and upstream).
        OpenFileLimit.raiseToHardLimit()
        let reactor = try Reactor()
        let controlGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer {
            reactor.stop()
            controlGroup.shutdownGracefully { _ in }
        }
        let registry = ConsulClient(host: settings.registryHost, port: settings.registryPort, http: HTTPClient(group: controlGroup),
                                    token: settings.registryToken)
        let localPort = try Self.localServicePort(settings.localPort)
        let forwarder = settings.shipLogs ? LogForwarder(service: settings.service, metrics: metrics) : nil
        let sink = OutputSink(forwarder: forwarder)

        // Outbound and inbound listeners first: their ports go into the registration and the
        // service's environment. Set up here, before the reactor's thread starts.
        let policyState = PolicyState(filePolicy: settings.filePolicy)
        let dataPlane = DataPlane(
            reactor: reactor, policy: policyState.current, upstreams: settings.upstreams.map(\.name),
            localEndpoint: EndpointInfo(id: "local", host: "127.0.0.1", port: localPort),
            metrics: metrics,
            accessLog: AccessLog(service: settings.service, enabled: settings.accessLog, sink: sink),
            connectionTimeouts: settings.connectionTimeouts, mtls: settings.mtls)
        var upstreamURLs: [(String, String)] = []
        for upstream in settings.upstreams {
            let port = try dataPlane.listen(.upstream(upstream.name), host: "127.0.0.1", port: upstream.port)
            upstreamURLs.append((upstream.name, "http://127.0.0.1:\(port)"))
        }
        let publicPort = try dataPlane.listen(.inbound, host: settings.address, port: settings.port)
        let instanceID = settings.instanceID ?? Self.defaultInstanceID(settings.service, address: settings.address, port: publicPort)
        dataPlane.accessLog.instance = instanceID
        dataPlane.startHousekeeping()
        let plane = ReactorBound(dataPlane, on: reactor)
        reactor.start(name: "trellis-data")
        forwarder?.setInstance(instanceID)

        let supervisor: ServiceSupervisor? = settings.command.isEmpty ? nil : ServiceSupervisor(
            command: settings.command,
            environment: ProcessInfo.processInfo.environment
                .merging(["PORT": String(localPort)]) { $1 }
                .merging(upstreamURLs.map { (SidecarSettings.environmentName(forUpstream: $0.0), $0.1) }) { $1 },
            output: ServiceOutput(service: settings.service, instance: instanceID, sink: sink),
            logger: logger, metrics: metrics)

        let healthClient = HTTPClient(group: controlGroup)
        let admin = AdminResponder(
            planes: [plane], metrics: metrics,
            config: {
                let snapshot = policyState.snapshot
                return .object(JSONObject([("source", .string(snapshot.source)), ("policy", snapshot.policy.json)]))
            },
            readiness: { [settings] in
                await AdminResponder.serviceReadiness(supervisor: supervisor, localPort: localPort, healthPath: settings.healthPath,
                                                      client: healthClient)
            })
        let adminServer = try await HTTPServer.start(host: settings.address, port: settings.adminPort, group: controlGroup,
                                                     limits: HTTPLimits(maxBodySize: 1024), responder: admin, logger: logger)
        let adminPort = adminServer.localAddress.port!
        let registration = Registration(
            registry: registry, logger: logger, body: registrationBody(id: instanceID, port: publicPort, adminPort: adminPort),
            instanceID: instanceID)

        var banner = "trellis sidecar \(settings.service) (\(instanceID)) listening on http://\(settings.address):\(publicPort) → 127.0.0.1:\(localPort), admin http://\(settings.address):\(adminPort)"
        for (name, url) in upstreamURLs { banner += "\n  upstream \(name): \(SidecarSettings.environmentName(forUpstream: name))=\(url)" }
        onReady(banner)
        SystemdNotifier.ready(status: "\(instanceID) proxying on \(settings.address):\(publicPort)")

        await withTaskGroup(of: Void.self) { group in
            if let supervisor { group.addTask { await supervisor.run() } }
            group.addTask { await registration.keepRegistered() }
            if let forwarder {
                group.addTask { await forwarder.run(client: HTTPClient(group: controlGroup)) }
                if let fixed = settings.collector {
                    forwarder.setCollector(fixed)
                } else {
                    group.addTask { [logger] in
                        await ServiceDiscovery.follow(WellKnownNames.collectorService, registry: registry, log: { logger.debug("\($0)") }) { found in
                            forwarder.setCollector(found.first.map { ($0.host, $0.port) })
                        }
                    }
                }
            }
            for upstream in settings.upstreams {
                group.addTask { [logger] in
                    await ServiceDiscovery.follow(upstream.name, registry: registry, log: { logger.warning("\($0)") }) { endpoints in
                        logger.info("instances changed", metadata: ["upstream": "\(upstream.name)", "count": "\(endpoints.count)"])
                        reactor.execute { plane.value.updateEndpoints(upstream: upstream.name, endpoints) }
                    }
                }
            }
            group.addTask { [settings, logger, metrics] in
                await IdentityWatcher(service: settings.service, registry: registry, logger: logger, metrics: metrics,
                                      onIdentity: { identity in reactor.execute { plane.value.install(identity, logger: logger) } },
                                      onIntentions: { rules in reactor.execute { plane.value.mesh.intentions = rules } }).run()
            }
            group.addTask { [settings, logger, metrics] in
                await PolicyWatcher(service: settings.service, registry: registry, state: policyState,
                                    logger: logger, metrics: metrics) { policy in
                    reactor.execute { plane.value.apply(policy) }
                }.run()
            }

            try? await gracefulShutdown()
            SystemdNotifier.stopping()
            logger.info("draining", metadata: ["instance": "\(instanceID)"])
            // 1. Fail readiness and ask inbound clients to close; 2. leave the registry so callers
            // stop choosing us; 3. stop accepting; 4. finish what is in flight; 5. stop the service.
            reactor.execute { plane.value.draining = true }
            admin.draining = true
            await registration.deregister()
            await reactor.submit { plane.value.stopAccepting(.inbound) }
            let deadline = ContinuousClock.now + .nanoseconds(settings.drainTimeout.nanoseconds)
            while ContinuousClock.now < deadline {
                let inFlight = await reactor.submit { plane.value.inFlight }
                if inFlight == 0 { break }
                try? await Task.sleep(for: .milliseconds(20))
            }
            await supervisor?.stop(grace: .seconds(5))
            await reactor.submit { plane.value.accessLog.flush() }
            await forwarder?.drain(client: HTTPClient(group: controlGroup))
            group.cancelAll()
        }
        await reactor.submit { plane.value.stop() }
        await adminServer.close()
        await reactor.submit { plane.value.accessLog.flush() }
        logger.info("stopped", metadata: ["instance": "\(instanceID)"])
    }

    private func registrationBody(id: String, port: Int, adminPort: Int) -> [UInt8] {
        var meta = settings.meta
        meta[WellKnownNames.sidecarAdminPortMeta] = String(adminPort)
        meta[WellKnownNames.sidecarMTLSMeta] = settings.mtls.rawValue
        if !settings.upstreams.isEmpty { meta[WellKnownNames.sidecarUpstreamsMeta] = settings.upstreams.map(\.name).joined(separator: ",") }
        let check = JSONObject([
            ("CheckID", .string("sidecar:\(id)")),
            ("Name", .string("\(settings.service) readiness through its sidecar")),
            ("HTTP", .string("http://\(HostPort.format(settings.address, adminPort))/ready")),
            ("Interval", .string(settings.checkInterval)),
            ("Timeout", .string("1s")),
            ("DeregisterCriticalServiceAfter", .string("1m")),
        ])
        return JSON.object(JSONObject([
            ("ID", .string(id)),
            ("Name", .string(settings.service)),
            ("Tags", .strings(settings.tags)),
            ("Address", .string(settings.address)),
            ("Port", .int(Int64(port))),
            ("Meta", .stringMap(meta)),
            ("Check", .object(check)),
        ])).serialized()
    }

    static func defaultInstanceID(_ service: String, address: String, port: Int) -> String {
        ["127.0.0.1", "::1", "localhost"].contains(address) ? "\(service)-\(port)" : "\(service)-\(address)-\(port)"
    }

    /// The port the service listens on: given, or a free one outside the ephemeral range, so no
    /// outgoing connection of this machine takes it while the service starts or restarts.
    private static func localServicePort(_ given: Int?) throws -> Int {
        if let given { return given }
        let held = try HeldPort.hold(0, for: "local service port")
        held.release()
        return held.port
    }
}
