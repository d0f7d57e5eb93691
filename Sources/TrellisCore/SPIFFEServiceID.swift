/// A service's SPIFFE ID as Consul's CA writes it: `spiffe://<trust domain>/ns/default/dc/<dc>/svc/<service>`.
/// The registry puts it in leaf certificates; sidecars read it from their peers' certificates.
public struct SPIFFEServiceID: Equatable, Sendable {
    public let trustDomain: String
    public let datacenter: String
    public let service: String

    public init(trustDomain: String, datacenter: String, service: String) {
        self.trustDomain = trustDomain
        self.datacenter = datacenter
        self.service = service
    }

    /// Parses a service identity (any namespace); nil for anything else.
    public init?(_ uri: String) {
        guard uri.hasPrefix("spiffe://") else { return nil }
        let parts = uri.dropFirst("spiffe://".count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 7, !parts[0].isEmpty, parts[1] == "ns", parts[3] == "dc", parts[5] == "svc", !parts[6].isEmpty else {
            return nil
        }
        self.init(trustDomain: parts[0], datacenter: parts[4], service: parts[6])
    }

    public var uri: String { "spiffe://\(trustDomain)/ns/default/dc/\(datacenter)/svc/\(service)" }

    /// The identity of `service` in the same trust domain and datacenter.
    public func sibling(_ service: String) -> SPIFFEServiceID {
        SPIFFEServiceID(trustDomain: trustDomain, datacenter: datacenter, service: service)
    }
}
