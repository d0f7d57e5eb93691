import ConsulClient
import EventIO
import Foundation
import Logging
import NIOCore
import NIOPosix
import Policy
import ServiceLifecycle
import Synchronization
import TrellisCore
import TrellisHTTP

/// What `trellis gateway` runs with.
public struct GatewaySettings: Sendable {
    /// Names the gateway: its policy key (`trellis/gateways/<name>`), registration and logs.
    public var name: String
    public var port: Int
    public var address = "0.0.0.0"
    /// Event loops serving the public port (SO_REUSEPORT), one per core by default.
    public var workers = max(1, ProcessInfo.processInfo.activeProcessorCount)
    public var adminPort = 0
    public var registryHost = "127.0.0.1"
    public var registryPort = 8500
    public var registryToken: String?
    /// In force while the registry holds no policy for the gateway.
    public var filePolicy: GatewayPolicy?
    public var connectionTimeouts = ConnectionTimeouts()
    public var accessLog = true
    public var drainTimeout: TimeAmount = .seconds(10)
    /// TLS on the public port: the certificate chain (PEM, the leaf first) and its key.
    public var tls: (certificateChainPEM: String, privateKeyPEM: String)?

    public init(name: String, port: Int) {
        self.name = name
        self.port = port
    }
}

/// The public entry of a fleet: the sidecar's data plane in edge mode on several event loops,
/// with the rules of its policy (file, then registry KV, applied live), backends discovered in
/// the registry, JWKS keys fetched in the background, and the sidecar's admin endpoints.
public final class Gateway: Service {
    private let settings: GatewaySettings
    private let logger: Logger
    private let onReady: @Sendable (String) -> Void
    public let metrics = SidecarMetrics(component: "gateway")

    public init(settings: GatewaySettings, logger: Logger, onReady: @escaping @Sendable (String) -> Void) {
        self.settings = settings
        self.logger = logger
        self.onReady = onReady
    }

    public func run() async throws {
        OpenFileLimit.raiseToHardLimit()
        let controlGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let reactors = try (0..<settings.workers).map { _ in try Reactor() }
        defer {
            for reactor in reactors { reactor.stop() }
            controlGroup.shutdownGracefully { _ in }
        }
        let registry = ConsulClient(host: settings.registryHost, port: settings.registryPort, http: HTTPClient(group: controlGroup),
                                    token: settings.registryToken)
        let state = GatewayState(fallback: settings.filePolicy.map { ($0, "file") } ?? (GatewayPolicy(), "none"))
        let keys = try await state.keys(for: state.current.policy)
        let firstLimiters = state.limiters(for: state.current.policy)
        let tls = try settings.tls.map { try TLSContext(serverCertificateChainPEM: $0.certificateChainPEM, privateKeyPEM: $0.privateKeyPEM) }

        // Every worker listens on the same port; the first one picks it when 0 was asked for.
        var port = settings.port
        var workers: [ReactorBound<DataPlane>] = []
        for reactor in reactors {
            let plane = DataPlane(reactor: reactor, gateway: state.current.policy, keys: keys, limiters: firstLimiters, metrics: metrics,
                                  accessLog: AccessLog(service: settings.name, enabled: settings.accessLog, sink: OutputSink(forwarder: nil)),
                                  connectionTimeouts: settings.connectionTimeouts)
            plane.edgeTLS = tls
            port = try plane.listen(.edge, host: settings.address, port: port, reusePort: true)
            plane.accessLog.instance = "\(settings.name)-\(port)"
            plane.startHousekeeping()
            workers.append(ReactorBound(plane, on: reactor))
        }
        let planes = workers
        for (index, reactor) in reactors.enumerated() { reactor.start(name: "trellis-edge-\(index)") }

        let admin = AdminResponder(planes: planes, metrics: metrics, hasRoutes: true,
                                   config: { state.json }, readiness: { state.readiness })
        let adminServer = try await HTTPServer.start(host: settings.address, port: settings.adminPort, group: controlGroup,
                                                     limits: HTTPLimits(maxBodySize: 1024), responder: admin, logger: logger)
        let adminPort = adminServer.localAddress.port!
        let instanceID = "\(settings.name)-\(port)"
        let registration = Registration(registry: registry, logger: logger,
                                        body: registrationBody(id: instanceID, port: port, adminPort: adminPort), instanceID: instanceID)
        let apply: @Sendable (GatewayPolicy, [String: [VerificationKey]]?, [String: [EndpointInfo]]) -> Void = { policy, keys, endpoints in
            let limiters = state.limiters(for: policy)
            for plane in planes {
                plane.reactor.execute { plane.value.apply(gateway: policy, keys: keys, limiters: limiters, endpoints: endpoints) }
            }
        }
        onReady("trellis gateway \(settings.name) listening on \(tls == nil ? "http" : "https")://\(HostPort.format(settings.address, port)) "
            + "(\(settings.workers) workers), admin http://\(HostPort.format(settings.address, adminPort))")
        SystemdNotifier.ready(status: "\(instanceID) serving on \(settings.address):\(port)")

        let followers = TaskSet()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await registration.keepRegistered() }
            // Backends and JWKS documents are followed as the policies in force name them.
            let follow: @Sendable (GatewayPolicy) -> Void = { [logger] policy in
                for service in policy.backendServices {
                    followers.start("service:\(service)") {
                        await ServiceDiscovery.follow(service, registry: registry, log: { logger.warning("\($0)") }) { endpoints in
                            logger.info("instances changed", metadata: ["backend": "\(service)", "count": "\(endpoints.count)"])
                            state.discovered(service)
                            for plane in planes { plane.reactor.execute { plane.value.updateEndpoints(upstream: service, endpoints) } }
                        }
                    }
                }
                for (name, provider) in policy.jwtProviders {
                    guard let url = provider.jwksURL else { continue }
                    followers.start("jwks:\(name):\(url)") {
                        await state.followJWKS(provider: name, url: url, every: provider.jwksRefresh, client: HTTPClient(group: controlGroup),
                                               logger: logger) { keys in
                            // Only this issuer's keys change: the rules and the other issuers' remembered tokens stay.
                            for plane in planes { plane.reactor.execute { plane.value.edgeAuth.verifiers[name]?.install(keys) } }
                        }
                    }
                }
            }
            follow(state.current.policy)
            // Global limits are divided between the gateway's replicas, as many as the registry lists.
            group.addTask { [settings, logger] in
                await ServiceDiscovery.follow(settings.name, registry: registry, log: { logger.debug("\($0)") }) { instances in
                    guard state.setReplicas(instances.count) else { return }
                    logger.info("replicas changed", metadata: ["count": "\(instances.count)"])
                    let current = state.current.policy
                    guard current.rules.contains(where: { $0.settings.rateLimit?.global == true }) else { return }
                    apply(current, nil, [:])
                }
            }
            // The gateway's own identity: its calls to sidecars that take mutual TLS present it.
            group.addTask { [settings, logger, metrics] in
                await IdentityWatcher(service: settings.name, registry: registry, logger: logger, metrics: metrics,
                                      onIdentity: { identity in
                                          for plane in planes { plane.reactor.execute { plane.value.install(identity, logger: logger) } }
                                      },
                                      onIntentions: nil).run()
            }
            group.addTask { await self.followPolicy(registry: registry, state: state, apply: apply, follow: follow) }

            try? await gracefulShutdown()
            SystemdNotifier.stopping()
            logger.info("draining", metadata: ["instance": "\(instanceID)"])
            admin.draining = true
            await registration.deregister()
            for plane in planes {
                await plane.reactor.submit { plane.value.draining = true; plane.value.stopAccepting(.edge) }
            }
            let deadline = ContinuousClock.now + .nanoseconds(settings.drainTimeout.nanoseconds)
            for plane in planes {
                while ContinuousClock.now < deadline, await plane.reactor.submit({ plane.value.inFlight }) > 0 {
                    try? await Task.sleep(for: .milliseconds(20))
                }
                await plane.reactor.submit { plane.value.stop(); plane.value.accessLog.flush() }
            }
            followers.cancelAll()
            group.cancelAll()
        }
        await adminServer.close()
        logger.info("stopped", metadata: ["instance": "\(instanceID)"])
    }

    /// Follows `trellis/gateways/<name>` in the registry KV: each valid version is applied whole
    /// (keys loaded and new backends looked up first); an invalid one is logged and counted, and
    /// the policy in force stays. A deleted key returns to the `--policy` file.
    private func followPolicy(registry: ConsulClient, state: GatewayState,
                              apply: @escaping @Sendable (GatewayPolicy, [String: [VerificationKey]]?, [String: [EndpointInfo]]) -> Void,
                              follow: @escaping @Sendable (GatewayPolicy) -> Void) async {
        let key = GatewayPolicy.key(for: settings.name)
        await registry.watch(GatewayPolicy.kvPath(for: settings.name), onError: { [logger] in logger.warning("policy watch: \($0)") }) {
            [logger, metrics] response in
            let next: (policy: GatewayPolicy, source: String)
            if response.status == .ok, let value = try JSON.parse(response.bodyBytes)[0]?["Value"]?.stringValue, let yaml = Base64.decode(value) {
                do { next = (try GatewayPolicyParser.parse(String(decoding: yaml, as: UTF8.self)), "registry:\(key)") } catch {
                    metrics.policyRejected.increment()
                    logger.error("gateway policy rejected, keeping the one in force", metadata: ["key": "\(key)", "error": "\(error)"])
                    return
                }
            } else {
                next = state.fallback
            }
            guard next.policy != state.current.policy || next.source != state.current.source else { return }
            let keys: [String: [VerificationKey]]
            do { keys = try await state.keys(for: next.policy) } catch {
                metrics.policyRejected.increment()
                logger.error("gateway policy rejected: a key does not load", metadata: ["error": "\(error)"])
                return
            }
            // Backends the rules did not name before are looked up first: a rule never switches
            // to a backend whose instances the gateway does not know yet.
            let known = Set(state.current.policy.backendServices)
            var endpoints: [String: [EndpointInfo]] = [:]
            for service in next.policy.backendServices where !known.contains(service) {
                let answer = try? await registry.call(.GET, "/v1/health/service/\(URLPath.escape(service))?passing=1")
                endpoints[service] = answer.flatMap { try? ServiceDiscovery.parse($0.bodyBytes) }
            }
            state.set(next)
            metrics.policyApplied.increment()
            logger.info("gateway policy applied", metadata: ["source": "\(next.source)", "rules": "\(next.policy.rules.count)"])
            apply(next.policy, keys, endpoints)
            follow(next.policy)
        }
    }

    /// Registered so that the collector scrapes the admin port and the UI lists the gateway.
    private func registrationBody(id: String, port: Int, adminPort: Int) -> [UInt8] {
        let address = settings.address == "0.0.0.0" ? "127.0.0.1" : settings.address
        let check = JSONObject([
            ("CheckID", .string("gateway:\(id)")),
            ("Name", .string("\(settings.name) gateway readiness")),
            ("HTTP", .string("http://\(HostPort.format(address, adminPort))/ready")),
            ("Interval", .string("2s")),
            ("Timeout", .string("1s")),
            ("DeregisterCriticalServiceAfter", .string("1m")),
        ])
        return JSON.object(JSONObject([
            ("ID", .string(id)), ("Name", .string(settings.name)), ("Tags", .strings(["gateway"])),
            ("Address", .string(address)), ("Port", .int(Int64(port))),
            ("Meta", .stringMap([WellKnownNames.sidecarAdminPortMeta: String(adminPort)])),
            ("Check", .object(check)),
        ])).serialized()
    }
}

/// The gateway policy in force and its source, and the JWKS keys last fetched per provider.
final class GatewayState: Sendable {
    let fallback: (policy: GatewayPolicy, source: String)
    private let state: Mutex<(policy: GatewayPolicy, source: String)>
    private let jwks = Mutex<[String: [VerificationKey]]>([:])
    private let limiterState = Mutex<[String: RateLimiter]>([:])
    /// Passing instances of this gateway in the registry (itself included), among which global limits are divided.
    private let replicas = Mutex(1)
    /// Backends whose instances the registry has answered for at least once.
    private let known = Mutex<Set<String>>([])

    init(fallback: (policy: GatewayPolicy, source: String)) {
        self.fallback = fallback
        state = Mutex(fallback)
    }

    var current: (policy: GatewayPolicy, source: String) { state.withLock { $0 } }

    func set(_ next: (policy: GatewayPolicy, source: String)) { state.withLock { $0 = next } }

    /// Notes how many replicas run; true when that changed.
    func setReplicas(_ count: Int) -> Bool {
        replicas.withLock { current in
            defer { current = max(1, count) }
            return current != max(1, count)
        }
    }

    func discovered(_ service: String) { _ = known.withLock { $0.insert(service) } }

    /// Ready once the registry answered for every backend the rules name.
    var readiness: HTTPResponse {
        let waiting = current.policy.backendServices.filter { service in !known.withLock { $0.contains(service) } }
        return waiting.isEmpty ? .text(.ok, "ready") : .text(.serviceUnavailable, "waiting for the instances of \(waiting.joined(separator: ", "))")
    }

    var json: JSON {
        let (policy, source) = current
        return .object(JSONObject([("source", .string(source)), ("policy", policy.json)]))
    }

    /// The rate limiters of `policy`'s rules, shared by the workers; a rule whose limit did not
    /// change keeps its buckets.
    func limiters(for policy: GatewayPolicy) -> [String: RateLimiter] {
        let replicas = self.replicas.withLock { $0 }
        return limiterState.withLock { current in
            var next: [String: RateLimiter] = [:]
            for rule in policy.rules {
                guard let limit = rule.settings.rateLimit?.share(of: replicas) else { continue }
                next[rule.name] = current[rule.name].flatMap { $0.policy == limit ? $0 : nil } ?? RateLimiter(policy: limit)
            }
            current = next
            return next
        }
    }

    /// Each provider's keys: its inline and file keys (made by jwt-kit now) and its last JWKS.
    func keys(for policy: GatewayPolicy) async throws -> [String: [VerificationKey]] {
        var out: [String: [VerificationKey]] = [:]
        for (name, provider) in policy.jwtProviders {
            out[name] = try await VerificationKey.keys(of: provider) + (jwks.withLock { $0[name] } ?? [])
        }
        return out
    }

    /// Fetches `url` now and every `every`; a changed document replaces the provider's JWKS keys and
    /// `onChange` gets all of the provider's keys; a failed fetch keeps the last good set (and is
    /// tried again in 5 s).
    func followJWKS(provider: String, url: String, every: TimeAmount, client: HTTPClient, logger: Logger,
                    onChange: @escaping @Sendable ([VerificationKey]) -> Void) async {
        guard let target = HTTPTarget(url) else {
            logger.error("jwks_url is not an http URL this gateway can fetch", metadata: ["url": "\(url)"])
            return
        }
        var last: [UInt8]?
        while !Task.isCancelled {
            var wait = every
            do {
                let answer = try await client.send(.GET, host: target.host, port: target.port, path: target.path, timeout: .seconds(10))
                guard answer.status == .ok else { throw JWKSFailure(description: "answered \(answer.status.code)") }
                // An unchanged document changes nothing (verified tokens stay remembered).
                if answer.bodyBytes != last {
                    let keys = try await VerificationKey.keys(ofJWKS: String(decoding: answer.bodyBytes, as: UTF8.self))
                    guard !keys.isEmpty else { throw JWKSFailure(description: "no usable key in the JWKS") }
                    jwks.withLock { $0[provider] = keys }
                    last = answer.bodyBytes
                    onChange(try await self.keys(for: current.policy)[provider] ?? [])
                }
            } catch {
                logger.warning("JWKS fetch failed, keeping the last good keys", metadata: ["url": "\(url)", "error": "\(error)"])
                wait = min(every, .seconds(5))
            }
            try? await Task.sleep(for: .nanoseconds(wait.nanoseconds))
        }
    }
}

struct JWKSFailure: Error, CustomStringConvertible {
    let description: String
}

/// `http://host[:port]/path` split for the control-plane client.
struct HTTPTarget {
    let host: String
    let port: Int
    let path: String

    init?(_ url: String) {
        guard url.hasPrefix("http://") else { return nil }
        let rest = url.dropFirst(7)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = String(rest[..<slash])
        guard let (host, port) = HostPort.parse(authority) ?? (authority.isEmpty || authority.contains(":") ? nil : (authority, 80)) else { return nil }
        self.host = host
        self.port = port
        path = slash == rest.endIndex ? "/" : String(rest[slash...])
    }
}

/// Background tasks by key, each started once and all cancelled together.
final class TaskSet: Sendable {
    private let tasks = Mutex<[String: Task<Void, Never>]>([:])

    func start(_ key: String, _ body: @escaping @Sendable () async -> Void) {
        tasks.withLock { tasks in
            guard tasks[key] == nil else { return }
            tasks[key] = Task { await body() }
        }
    }

    func cancelAll() {
        for task in tasks.withLock({ tasks in defer { tasks.removeAll() }; return Array(tasks.values) }) { task.cancel() }
    }
}
