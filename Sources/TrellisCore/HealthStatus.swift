/// The status of a health check, in Consul's words; aggregated as critical > warning > passing.
public enum HealthStatus: String, Sendable, CaseIterable, Comparable {
    case passing, warning, critical, maintenance

    private var severity: Int {
        switch self {
        case .passing: 0
        case .warning: 1
        case .critical: 2
        case .maintenance: 3
        }
    }

    public static func < (lhs: HealthStatus, rhs: HealthStatus) -> Bool { lhs.severity < rhs.severity }

    /// The worst of several statuses; passing when there are none.
    public static func aggregate(_ statuses: some Sequence<HealthStatus>) -> HealthStatus {
        statuses.max() ?? .passing
    }
}
