import TrellisCore

/// One service to register on the registry's node, with its checks, validated as Consul's agent
/// validates them: from `PUT /v1/agent/service/register` or from the services of the config file.
struct AgentRegistration: Sendable {
    /// A registration Consul refuses with a plain 400 (not a body that does not decode).
    enum Refusal: Error { case invalid(String) }

    var instance: ServiceInstance
    var checks: [(check: HealthCheck, explicitStatus: Bool)]
    /// The proxy of a `Connect.SidecarService`: its port is allocated when written unless given.
    var isSidecar: Bool

    /// Writes `registrations`; registering a service again keeps its checks' status unless given,
    /// and with `replacingChecks` removes the checks it no longer has.
    static func apply(_ registrations: [AgentRegistration], node: String, replacingChecks: Bool,
                      to state: inout RegistryState) throws(CatalogError) -> [HealthCheck] {
        var stored: [HealthCheck] = []
        for var registration in registrations {
            if registration.isSidecar && registration.instance.port == 0 {
                if let existing = state.instance(InstanceKey(node: node, id: registration.instance.id)) {
                    registration.instance.port = existing.port
                } else {
                    registration.instance.port = try SidecarServiceRegistration.allocatePort(on: node, state: state)
                }
                if registration.checks.isEmpty {
                    registration.checks = [(SidecarServiceRegistration.listeningCheck(registration.instance), false)]
                }
            }
            state.putInstance(registration.instance)
            if replacingChecks {
                let keep = Set(registration.checks.map(\.check.checkID))
                for old in state.checks(node: node, serviceID: registration.instance.id) where !keep.contains(old.checkID) {
                    state.removeCheck(CheckKey(node: node, checkID: old.checkID))
                }
            }
            stored += registration.checks.map { state.registerCheck($0.check, explicitStatus: $0.explicitStatus) }
        }
        return stored
    }
}
