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

/// Rows of text in aligned columns (the last column is not padded).
public enum TextTable {
    public static func lines(_ rows: [[String]]) -> [String] {
        guard let header = rows.first else { return [] }
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
    }
}
