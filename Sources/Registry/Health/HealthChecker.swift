import Logging
import NIOCore
import TrellisCore

/// Runs the checks of the registry's own node: HTTP, TCP and script probes on their interval, TTL expiry,
/// Consul's success/failure thresholds, and deregistration of services critical for too long.
///
/// All of its state lives on one event loop; the catalog is the only thing it shares.
public final class HealthChecker: @unchecked Sendable {
    private struct Runner {
        var definition: CheckDefinition
        var task: Scheduled<Void>?
        var http: HTTPProbe.Prepared?
        /// For TTL checks: when the TTL lapses unless refreshed before.
        var ttlDeadline: NIODeadline?
        var successes = 0
        var failures = 0
    }

    private let catalog: Catalog
    private let node: String
    private let loop: any EventLoop
    private let logger: Logger
    private let httpProbe: HTTPProbe
    private var runners: [CheckKey: Runner] = [:]
    private var criticalSince: [CheckKey: NIODeadline] = [:]
    private var reaper: RepeatedTask?
    private let onProbe: @Sendable (String, HealthStatus) -> Void

    /// Whether script checks run (`enable_script_checks`); otherwise a stored one reports why it does not.
    private let runsScripts: Bool

    public init(catalog: Catalog, node: String, loop: any EventLoop, logger: Logger, runsScripts: Bool = false,
                onProbe: @escaping @Sendable (_ type: String, _ status: HealthStatus) -> Void = { _, _ in }) {
        self.runsScripts = runsScripts
        self.catalog = catalog
        self.node = node
        self.loop = loop
        self.logger = logger
        self.onProbe = onProbe
        self.httpProbe = HTTPProbe(loop: loop)
    }

    /// Schedules every check of the node found in the catalog (after a restart too) and starts the reaper.
    public func start() {
        let checks = catalog.read { $0.checks(onNode: node) }
        loop.execute {
            for check in checks {
                self.adopt(check)
            }
            self.reaper = self.loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
                self.reapCritical()
                self.httpProbe.pruneIdle()
            }
        }
    }

    public func stop() {
        loop.execute {
            self.reaper?.cancel()
            for runner in self.runners.values { runner.task?.cancel() }
            self.runners = [:]
        }
    }

    /// Starts (or restarts with a new definition) the check as registered now.
    public func checkRegistered(_ check: HealthCheck) {
        loop.execute { self.adopt(check) }
    }

    /// Notes a status set from outside (TTL pass/warn/fail/update): restarts the TTL clock.
    public func statusSet(_ check: HealthCheck) {
        loop.execute {
            let key = CheckKey(node: check.node, checkID: check.checkID)
            self.trackCritical(key, check.status, check.definition)
            guard let ttl = check.definition.ttl else { return }
            // Moving the deadline instead of rescheduling: a refresh must not cancel a timer, which
            // costs a linear search of the loop's timer heap (TTL refreshes are frequent).
            if self.runners[key]?.task != nil, self.runners[key]?.definition == check.definition {
                self.runners[key]?.ttlDeadline = .now() + .nanoseconds(ttl.nanoseconds)
            } else {
                self.adopt(check)
            }
        }
    }

    private func adopt(_ check: HealthCheck) {
        let key = CheckKey(node: check.node, checkID: check.checkID)
        runners[key]?.task?.cancel()
        runners[key] = nil
        trackCritical(key, check.status, check.definition)
        let d = check.definition
        if let ttl = d.ttl {
            var runner = Runner(definition: d)
            runner.ttlDeadline = .now() + .nanoseconds(ttl.nanoseconds)
            runner.task = loop.scheduleTask(in: .nanoseconds(ttl.nanoseconds)) { self.ttlTick(key) }
            runners[key] = runner
        } else if let interval = d.interval, !d.http.isEmpty || !d.tcp.isEmpty || !d.args.isEmpty {
            // Like Consul, the first run is staggered within the interval so checks spread out.
            let stagger = Int64.random(in: 0...max(1, interval.nanoseconds))
            var runner = Runner(definition: d, task: loop.scheduleTask(in: .nanoseconds(stagger)) { self.probe(key) })
            if !d.http.isEmpty { runner.http = HTTPProbe.prepare(d, timeout: Self.timeout(d)) }
            runners[key] = runner
        }
    }

    /// The TTL timer fired: expire the check, or wait on if it was refreshed in the meantime.
    private func ttlTick(_ key: CheckKey) {
        guard let deadline = runners[key]?.ttlDeadline else { return }
        let now = NIODeadline.now()
        if now < deadline {
            runners[key]?.task = loop.scheduleTask(deadline: deadline) { self.ttlTick(key) }
            return
        }
        runners[key]?.task = nil
        update(key, ProbeResult(status: .critical, output: "TTL expired"))
    }

    /// The probe timeout: the check's, else 10s capped at the interval (Consul's default).
    private static func timeout(_ d: CheckDefinition) -> TimeAmount {
        .nanoseconds((d.timeout ?? min(.seconds(10), d.interval ?? .seconds(10))).nanoseconds)
    }

    private func probe(_ key: CheckKey) {
        guard let runner = runners[key] else { return }
        let d = runner.definition
        let interval = d.interval ?? .seconds(10)
        let result: EventLoopFuture<ProbeResult>
        if let http = runner.http {
            result = httpProbe.run(http)
        } else if !d.args.isEmpty {
            result = runsScripts
                ? ScriptProbe.run(d.args, timeout: d.timeout ?? ScriptProbe.defaultTimeout, on: loop)
                : loop.makeSucceededFuture(ProbeResult(status: .critical, output: CheckFields.scriptsDisabledMessage))
        } else {
            result = Probes.tcp(d.tcp, timeout: Self.timeout(d), on: loop)
        }
        result.whenSuccess { outcome in
            self.onProbe(d.type, outcome.status)
            guard self.runners[key] != nil else { return }
            self.applyThresholds(key, outcome)
            self.runners[key]?.task = self.loop.scheduleTask(in: .nanoseconds(interval.nanoseconds)) { self.probe(key) }
        }
    }

    /// Consul's `success_before_passing` / `failures_before_warning` / `failures_before_critical`.
    private func applyThresholds(_ key: CheckKey, _ outcome: ProbeResult) {
        guard var runner = runners[key] else { return }
        let d = runner.definition
        var status = outcome.status
        if status == .passing {
            runner.successes += 1
            runner.failures = 0
            if runner.successes < d.successBeforePassing { status = currentStatus(key) ?? status }
        } else if status == .critical {
            runner.failures += 1
            runner.successes = 0
            if runner.failures < d.failuresBeforeCritical {
                let warnAt = d.failuresBeforeWarning > 0 ? d.failuresBeforeWarning : d.failuresBeforeCritical
                status = runner.failures >= warnAt ? .warning : (currentStatus(key) ?? status)
            }
        } else {
            runner.successes = 0
        }
        runners[key] = runner
        update(key, ProbeResult(status: status, output: outcome.output))
    }

    private func currentStatus(_ key: CheckKey) -> HealthStatus? {
        catalog.read { $0.check(key)?.status }
    }

    /// Records a result (whose output the probe already bounded to Consul's size).
    private func update(_ key: CheckKey, _ outcome: ProbeResult) {
        let output = outcome.output
        // Most probes confirm what is already recorded: that costs a read, not a write.
        let unchanged = catalog.read { state in
            state.check(key).map { $0.status == outcome.status && $0.output == output }
        }
        guard let unchanged else {
            // The check was deregistered: stop running it.
            runners[key] = nil
            criticalSince[key] = nil
            return
        }
        if unchanged { return }
        catalog.write({ (state: inout RegistryState) throws(CatalogError) -> HealthCheck? in
            guard var check = state.check(key) else { return nil }
            guard check.status != outcome.status || check.output != output else { return check }
            check.status = outcome.status
            check.output = output
            state.putCheck(check)
            return check
        }, completion: { [loop, logger] result in
            loop.execute {
                switch result {
                case .success(let check?): self.trackCritical(key, check.status, check.definition)
                case .success(nil): self.runners[key] = nil
                case .failure(let error): logger.error("could not record check result", metadata: ["error": "\(error)"])
                }
            }
        })
    }

    private func trackCritical(_ key: CheckKey, _ status: HealthStatus, _ d: CheckDefinition) {
        guard d.deregisterCriticalServiceAfter != nil, status == .critical else {
            criticalSince[key] = nil
            return
        }
        if criticalSince[key] == nil { criticalSince[key] = .now() }
    }

    /// Deregisters services whose check has been critical longer than `DeregisterCriticalServiceAfter`.
    private func reapCritical() {
        let now = NIODeadline.now()
        for (key, since) in criticalSince {
            let check = catalog.read { $0.check(key) }
            guard let check, let after = check.definition.deregisterCriticalServiceAfter, check.status == .critical else {
                criticalSince[key] = nil
                continue
            }
            guard now - since >= .nanoseconds(after.nanoseconds), !check.serviceID.isEmpty else { continue }
            criticalSince[key] = nil
            logger.info("deregistering service critical for too long",
                        metadata: ["service": "\(check.serviceID)", "check": "\(check.checkID)"])
            let instance = InstanceKey(node: check.node, id: check.serviceID)
            catalog.write({ (state: inout RegistryState) throws(CatalogError) in state.removeInstance(instance) },
                          completion: { _ in })
        }
    }
}
