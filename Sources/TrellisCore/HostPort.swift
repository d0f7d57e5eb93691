/// `host:port` text as the daemons' flags and Consul addresses spell it (IPv6 in brackets).
public enum HostPort {
    /// `127.0.0.1:8500`, `[::1]:8500`, `:8500` (all interfaces).
    public static func parse(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (0...65535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }

    /// `http://host:port` or plain `host:port`, a trailing `/` allowed, as registry and etcd
    /// addresses are given; nil for any other scheme.
    public static func parseHTTP(_ text: String) -> (String, Int)? {
        var address = Substring(text)
        if address.hasSuffix("/") { address = address.dropLast() }
        if address.hasPrefix("http://") {
            address = address.dropFirst("http://".count)
        } else if address.contains("://") {
            return nil
        }
        return parse(String(address))
    }

    public static func format(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
