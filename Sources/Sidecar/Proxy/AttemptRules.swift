import Policy
/// A route's retry and timeout settings in the form the attempt machine reads on every request:
/// made once when a policy is applied and shared by the route's requests (a reference each, not a
/// copy of the settings), with the retry conditions as flags and a short list of statuses, so that
/// no request hashes to find out what it may retry.
final class AttemptRules: Sendable {
    let retries: RetryPolicy
    let timeouts: Timeouts
    private let onConnectFailure: Bool
    private let onReset: Bool
    private let onTimeout: Bool
    private let onStatuses: [Int]

    init(_ settings: RouteSettings) {
        retries = settings.retries
        timeouts = settings.timeouts
        let conditions = settings.retries.conditions
        onConnectFailure = conditions.contains(.connectFailure)
        onReset = conditions.contains(.reset)
        onTimeout = conditions.contains(.timeout)
        onStatuses = conditions.compactMap { if case .status(let code) = $0 { code } else { nil } }.sorted()
    }

    /// Whether the route lists `condition` among those it retries.
    func retries(on condition: RetryPolicy.Condition) -> Bool {
        switch condition {
        case .connectFailure: onConnectFailure
        case .reset: onReset
        case .timeout: onTimeout
        case .status(let code): onStatuses.contains(code)
        }
    }
}
