import ConsulClient
import Policy
import TrellisHTTP
import Logging
import Synchronization
import TrellisCore

/// The policy in force and where it came from, for `/config`.
final class PolicyState: Sendable {
    /// In force while the registry holds no policy for the service: the `--policy` file, else the built-in one.
    let fallback: (policy: SidecarPolicy, source: String)
    private let state: Mutex<(policy: SidecarPolicy, source: String)>

    init(filePolicy: SidecarPolicy?) {
        fallback = filePolicy.map { ($0, "file") } ?? (SidecarPolicy(), "default")
        state = Mutex(fallback)
    }

    var current: SidecarPolicy { state.withLock { $0.policy } }
    var snapshot: (policy: SidecarPolicy, source: String) { state.withLock { $0 } }

    func set(_ policy: SidecarPolicy, source: String) { state.withLock { $0 = (policy, source) } }
}

/// Follows `trellis/policies/<service>` in the registry KV and applies each valid version whole;
/// an invalid one is logged and counted, and the policy in force stays.
struct PolicyWatcher {
    let service: String
    let registry: ConsulClient
    let state: PolicyState
    let logger: Logger
    let metrics: SidecarMetrics
    let onChange: @Sendable (SidecarPolicy) -> Void

    func run() async {
        let key = SidecarPolicy.key(for: service)
        await registry.watch(SidecarPolicy.kvPath(for: service),
                             onError: { logger.warning("policy watch: \($0)") }) { response in
            guard response.status == .ok, let value = try JSON.parse(response.bodyBytes)[0]?["Value"]?.stringValue,
                  let yaml = Base64.decode(value) else {
                return apply(state.fallback.policy, source: state.fallback.source)
            }
            do {
                apply(try PolicyParser.parse(String(decoding: yaml, as: UTF8.self)), source: "registry:\(key)")
            } catch {
                metrics.policyRejected.increment()
                logger.error("policy rejected, keeping the one in force", metadata: ["key": "\(key)", "error": "\(error)"])
            }
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
