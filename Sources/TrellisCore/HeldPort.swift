import Foundation

/// A loopback TCP port bound (not listening) until released, so ports handed out together never
/// collide and a fixed port that is taken is found before anything starts.
public struct HeldPort: Sendable {
    public let port: Int
    private let socket: Int32

    /// Holds `port` on 127.0.0.1; with 0, a free port below the kernel's ephemeral range, which
    /// neither outgoing connections nor other `bind(0)` calls can take between its release and
    /// the moment its new owner (started a little later) binds it.
    public static func hold(_ port: Int, for owner: String) throws(ConfigError) -> HeldPort {
        guard port == 0 else { return try bind(port, for: owner) }
        let ephemeralStart = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
            .flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } } ?? 32768
        let candidates = ephemeralStart > 12000 ? 10000..<ephemeralStart : 1024..<max(1025, ephemeralStart)
        for _ in 0..<200 {
            if let held = try? bind(Int.random(in: candidates), for: owner) { return held }
        }
        return try bind(0, for: owner)
    }

    /// Holds `port` for both TCP and UDP (a DNS server needs both), releasing the UDP probe at once:
    /// nothing else binds a fixed port below the ephemeral range between the check and its use.
    public static func holdTCPAndUDP(_ port: Int, for owner: String) throws(ConfigError) -> HeldPort {
        let held = try bind(port, for: owner)
        do {
            try bind(port, for: owner, type: SOCK_DGRAM).release()
        } catch {
            held.release()
            throw error
        }
        return held
    }

    private static func bind(_ port: Int, for owner: String, type: __socket_type = SOCK_STREAM) throws(ConfigError) -> HeldPort {
        let fd = Glibc.socket(AF_INET, Int32(type.rawValue), 0)
        guard fd >= 0 else { throw ConfigError(description: "\(owner): cannot open a socket (errno \(errno))") }
        // As servers do: connections of a previous run in TIME_WAIT do not make the port "in use".
        var reuse: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                Glibc.bind(fd, raw, length) == 0 && getsockname(fd, raw, &length) == 0
            }
        }
        guard bound else {
            let reason = errno == EADDRINUSE ? "is in use" : "cannot be bound (errno \(errno))"
            close(fd)
            throw ConfigError(description: "\(owner): port \(port) \(reason)")
        }
        return HeldPort(port: Int(UInt16(bigEndian: address.sin_port)), socket: fd)
    }

    public func release() { close(socket) }
}
