import Foundation

/// The process's limit on open file descriptors.
public enum OpenFileLimit {
    /// Lifts the soft limit to the hard one: daemons hold a descriptor per connection, parked
    /// blocking query and kept-alive check connection, far beyond the usual soft limit of 1,024.
    public static func raiseToHardLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
