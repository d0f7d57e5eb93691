import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization
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
        let dataGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let controlGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer {
            dataGroup.shutdownGracefully { _ in }
            controlGroup.shutdownGracefully { _ in }
        }
        let loop = dataGroup.next()
        let registry = RegistryAPI(client: HTTPClient(group: controlGroup), host: settings.registryHost, port: settings.registryPort)
        let localPort = try settings.localPort ?? Self.freePort(host: "127.0.0.1")
        let sink = OutputSink()

        // Outbound and inbound listeners first: their ports go into the registration and the service's environment.
        let policyState = PolicyState(initial: settings.filePolicy ?? SidecarPolicy(), source: settings.filePolicy == nil ? "default" : "file")
        let bindings = Mutex<[String: any Channel]>([:])
        let plane = try await loop.submit { [settings, metrics] in
            NIOLoopBound(DataPlane(
                loop: loop, policy: policyState.current, upstreams: settings.upstreams.map(\.name),
                localEndpoint: EndpointInfo(id: "local", host: "127.0.0.1", port: localPort),
                metrics: metrics,
                accessLog: AccessLog(service: settings.service, enabled: settings.accessLog, sink: sink)),
                eventLoop: loop)
        }.get()
        var upstreamURLs: [(String, String)] = []
        for upstream in settings.upstreams {
            let channel = try await Self.listen(host: "127.0.0.1", port: upstream.port, loop: loop, plane: plane, key: upstream.name)
            bindings.withLock { $0[upstream.name] = channel }
            upstreamURLs.append((upstream.name, "http://127.0.0.1:\(channel.localAddress!.port!)"))
        }
        let inbound = try await Self.listen(host: settings.address, port: settings.port, loop: loop, plane: plane, key: DataPlane.inboundKey)
        let publicPort = inbound.localAddress!.port!
        let instanceID = settings.instanceID ?? Self.defaultInstanceID(settings.service, address: settings.address, port: publicPort)
        loop.execute { plane.value.accessLog.instance = instanceID }

        let supervisor: ServiceSupervisor? = settings.command.isEmpty ? nil : ServiceSupervisor(
            command: settings.command,
            environment: ProcessInfo.processInfo.environment
                .merging(["PORT": String(localPort)]) { $1 }
                .merging(upstreamURLs.map { (SidecarSettings.environmentName(forUpstream: $0.0), $0.1) }) { $1 },
            output: ServiceOutput(service: settings.service, instance: instanceID, sink: sink),
            logger: logger, metrics: metrics)

        let admin = AdminResponder(plane: plane, metrics: metrics, policy: policyState, supervisor: supervisor,
                                   localPort: localPort, healthPath: settings.healthPath,
                                   client: HTTPClient(group: controlGroup))
        let adminServer = try await HTTPServer.start(host: settings.address, port: settings.adminPort, group: controlGroup,
                                                     maxBodySize: 1024, responder: admin, logger: logger)
        let adminPort = adminServer.localAddress.port!
        let registration = Registration(
            registry: registry, logger: logger, body: registrationBody(id: instanceID, port: publicPort, adminPort: adminPort),
            instanceID: instanceID)

        var banner = "trellis sidecar \(settings.service) (\(instanceID)) listening on http://\(settings.address):\(publicPort) → 127.0.0.1:\(localPort), admin http://\(settings.address):\(adminPort)"
        for (name, url) in upstreamURLs { banner += "\n  upstream \(name): \(SidecarSettings.environmentName(forUpstream: name))=\(url)" }
        onReady(banner)

        let timers = loop.scheduleRepeatedTask(initialDelay: .milliseconds(200), delay: .milliseconds(200)) { _ in
            plane.value.accessLog.flush()
        }
        let sweeper = loop.scheduleRepeatedTask(initialDelay: .seconds(5), delay: .seconds(5)) { _ in
            plane.value.sweepIdleConnections(idleTimeout: .seconds(60))
        }

        await withTaskGroup(of: Void.self) { group in
            if let supervisor { group.addTask { await supervisor.run() } }
            group.addTask { await registration.keepRegistered() }
            for upstream in settings.upstreams {
                group.addTask { [logger] in
                    await ServiceDiscovery.follow(upstream.name, registry: registry, log: { logger.warning("\($0)") }) { endpoints in
                        logger.info("instances changed", metadata: ["upstream": "\(upstream.name)", "count": "\(endpoints.count)"])
                        loop.execute { plane.value.updateEndpoints(upstream: upstream.name, endpoints) }
                    }
                }
            }
            group.addTask { [settings, logger, metrics] in
                await PolicyWatcher(service: settings.service, registry: registry, state: policyState, filePolicy: settings.filePolicy,
                                    logger: logger, metrics: metrics) { policy in
                    loop.execute { plane.value.apply(policy) }
                }.run()
            }

            try? await gracefulShutdown()
            logger.info("draining", metadata: ["instance": "\(instanceID)"])
            // 1. Fail readiness and ask inbound clients to close; 2. leave the registry so callers
            // stop choosing us; 3. stop accepting; 4. finish what is in flight; 5. stop the service.
            loop.execute { plane.value.draining = true }
            admin.draining = true
            await registration.deregister()
            try? await inbound.close()
            let deadline = ContinuousClock.now + .nanoseconds(settings.drainTimeout.nanoseconds)
            while ContinuousClock.now < deadline {
                let inFlight = try? await loop.submit { plane.value.inboundInFlight }.get()
                if inFlight ?? 0 == 0 { break }
                try? await Task.sleep(for: .milliseconds(20))
            }
            await supervisor?.stop(grace: .seconds(5))
            group.cancelAll()
        }
        timers.cancel()
        sweeper.cancel()
        for channel in bindings.withLock({ Array($0.values) }) { try? await channel.close() }
        await adminServer.close()
        try? await loop.submit { plane.value.accessLog.flush() }.get()
        logger.info("stopped", metadata: ["instance": "\(instanceID)"])
    }

    private func registrationBody(id: String, port: Int, adminPort: Int) -> [UInt8] {
        var meta = settings.meta
        meta["trellis_sidecar_admin_port"] = String(adminPort)
        let check = JSONObject([
            ("CheckID", .string("sidecar:\(id)")),
            ("Name", .string("\(settings.service) readiness through its sidecar")),
            ("HTTP", .string("http://\(HostFormat.bracketed(settings.address)):\(adminPort)/ready")),
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

    private static func listen(host: String, port: Int, loop: any EventLoop, plane: NIOLoopBound<DataPlane>, key: String) async throws -> any Channel {
        try await ServerBootstrap(group: loop)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(ProxyHandler(plane: plane.value, listenerKey: key))
                }
            }
            .bind(host: host, port: port).get()
    }

    /// A port nothing listens on right now, for the service to bind.
    static func freePort(host: String) throws -> Int {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let channel = try ServerBootstrap(group: group).bind(host: host, port: 0).wait()
        let port = channel.localAddress!.port!
        try channel.close().wait()
        return port
    }
}

enum HostFormat {
    static func bracketed(_ host: String) -> String { host.contains(":") ? "[\(host)]" : host }
}

/// Keeps the instance registered: registers at start (retrying until the registry answers),
/// checks every few seconds that the registry still knows it and registers again if not.
final class Registration: Sendable {
    let registry: RegistryAPI
    let logger: Logger
    let body: [UInt8]
    let instanceID: String
    /// Set by `deregister`: from then on the instance must stay out of the registry.
    private let leaving = Atomic(false)

    init(registry: RegistryAPI, logger: Logger, body: [UInt8], instanceID: String) {
        self.registry = registry
        self.logger = logger
        self.body = body
        self.instanceID = instanceID
    }

    func keepRegistered() async {
        var registered = false
        while !Task.isCancelled && !leaving.load(ordering: .relaxed) {
            do {
                if registered {
                    let answer = try await registry.call(.GET, "/v1/agent/service/\(RegistryClient.escape(instanceID))")
                    if answer.status == .notFound {
                        logger.warning("registry forgot the instance, registering again", metadata: ["instance": "\(instanceID)"])
                        registered = false
                    }
                }
                if !registered {
                    try await registry.expectOK(.PUT, "/v1/agent/service/register", body: body)
                    registered = true
                    logger.info("registered", metadata: ["instance": "\(instanceID)"])
                    // A registration racing with shutdown must not outlive it.
                    if leaving.load(ordering: .relaxed) { await deregister() }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("registry unreachable", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: registered ? .seconds(3) : .milliseconds(500))
        }
    }

    func deregister() async {
        leaving.store(true, ordering: .relaxed)
        do {
            try await registry.expectOK(.PUT, "/v1/agent/service/deregister/\(RegistryClient.escape(instanceID))")
        } catch {
            logger.warning("could not deregister", metadata: ["error": "\(error)"])
        }
    }
}

/// The policy in force and where it came from, for `/config`.
final class PolicyState: Sendable {
    private let state: Mutex<(policy: SidecarPolicy, source: String)>

    init(initial: SidecarPolicy, source: String) { state = Mutex((initial, source)) }

    var current: SidecarPolicy { state.withLock { $0.policy } }
    var snapshot: (policy: SidecarPolicy, source: String) { state.withLock { $0 } }

    func set(_ policy: SidecarPolicy, source: String) { state.withLock { $0 = (policy, source) } }
}

/// Follows `trellis/policies/<service>` in the registry KV and applies each valid version whole;
/// an invalid one is logged and counted, and the policy in force stays.
struct PolicyWatcher {
    let service: String
    let registry: RegistryAPI
    let state: PolicyState
    let filePolicy: SidecarPolicy?
    let logger: Logger
    let metrics: SidecarMetrics
    let onChange: @Sendable (SidecarPolicy) -> Void

    static func key(for service: String) -> String { "trellis/policies/\(service)" }

    func run() async {
        let path = "/v1/kv/\(RegistryClient.escape(Self.key(for: service), keepingSlashes: true))"
        await registry.watch(path, onError: { logger.warning("policy watch: \($0)") }) { response in
            let (policy, source): (SidecarPolicy, String)
            if response.status == .notFound {
                (policy, source) = (filePolicy ?? SidecarPolicy(), filePolicy == nil ? "default" : "file")
            } else {
                guard let entry = try JSON.parse(response.bodyBytes)[0], let value = entry["Value"]?.stringValue,
                      let yaml = Base64.decode(value) else {
                    (policy, source) = (filePolicy ?? SidecarPolicy(), filePolicy == nil ? "default" : "file")
                    return apply(policy, source: source)
                }
                do {
                    policy = try PolicyParser.parse(String(decoding: yaml, as: UTF8.self))
                    source = "registry:\(Self.key(for: service))"
                } catch {
                    metrics.policyRejected.increment()
                    logger.error("policy rejected, keeping the one in force", metadata: ["key": "\(Self.key(for: service))", "error": "\(error)"])
                    return
                }
            }
            apply(policy, source: source)
        }
    }

    private func apply(_ policy: SidecarPolicy, source: String) {
        guard state.snapshot.policy != policy || state.snapshot.source != source else { return }
        state.set(policy, source: source)
        metrics.policyApplied.increment()
        logger.info("policy applied", metadata: ["source": "\(source)"])
        onChange(policy)
    }
}
