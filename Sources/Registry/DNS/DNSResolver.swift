import Foundation
import TrellisCore

/// Consul's `dns_config` settings that this DNS interface honours, with Consul's defaults.
public struct DNSSettings: Sendable {
    /// `node_ttl`: TTL of node lookups.
    public var nodeTTL: Duration = .zero
    /// `service_ttl`: TTL of service lookups by service name, `*` for every other service.
    public var serviceTTL: [String: Duration] = [:]
    /// `only_passing`: answer only instances whose checks all pass (otherwise warning counts as healthy).
    public var onlyPassing = false
    /// `udp_answer_limit`: most answers in a UDP response.
    public var udpAnswerLimit = 3
    /// `a_record_limit`: most A/AAAA answers at all (0: no limit).
    public var aRecordLimit = 0
    /// `enable_truncate`: set TC when a UDP answer had to be cut, so that clients retry over TCP.
    public var enableTruncate = false
    /// `soa.min_ttl`: the SOA's minimum (the TTL of negative answers).
    public var soaMinTTL: UInt32 = 0

    public init() {}

    func ttl(service: String) -> UInt32 {
        UInt32((serviceTTL[service] ?? serviceTTL["*"] ?? .zero).components.seconds)
    }
}

/// Answers DNS questions about the catalog as Consul's DNS interface does: `<service>.service`,
/// `<tag>.<service>.service`, RFC 2782 `_<service>._<tag>.service`, `<node>.node`,
/// `<hex>.addr`, each optionally followed by the datacenter, under `consul.`. Pure: state in,
/// records out.
struct DNSResolver {
    static let domain = "consul"
    let datacenter: String
    let settings: DNSSettings

    /// The answer to one question, read from `state`.
    /// Services and nodes `authorizer` may not read are not answered.
    func answer(_ labels: [String], type: UInt16, state: borrowing RegistryState,
                authorizer: ACLAuthorizer = ACLResolver.unrestricted) -> DNSAnswer {
        let lowered = labels.map { $0.lowercased() }
        guard lowered.last == Self.domain else { return DNSAnswer(rcode: .refused) }
        var parts = Array(lowered.dropLast())
        if parts.isEmpty { return apex(type) }
        // An optional datacenter label after the kind (`web.service.dc1.consul`).
        if parts.count >= 2, ["service", "node", "addr", "query"].contains(parts[parts.count - 2]) {
            guard parts.last == datacenter.lowercased() else { return negative() }
            parts.removeLast()
        }
        let kind = parts.removeLast()
        switch kind {
        case "service": return service(parts, type: type, labels: labels, state: state, authorizer: authorizer)
        case "node": return node(parts, type: type, labels: labels, state: state, authorizer: authorizer)
        case "addr": return address(parts, type: type, labels: labels)
        default: return negative()  // `.query.consul` (prepared queries) included: not kept here
        }
    }

    private func apex(_ type: UInt16) -> DNSAnswer {
        var answer = DNSAnswer()
        switch DNSType(rawValue: type) {
        case .soa?: answer.answers = [soa]
        case .ns?: answer.answers = [DNSRecord(name: "\(Self.domain).", ttl: 0, data: .ns("ns.\(Self.domain)."))]
        default: answer.authority = [soa]
        }
        return answer
    }

    private func negative() -> DNSAnswer { DNSAnswer(rcode: .nameError, authority: [soa]) }

    var soa: DNSRecord {
        DNSRecord(name: "\(Self.domain).", ttl: 0, data: .soa(
            primary: "ns.\(Self.domain).", mailbox: "hostmaster.\(Self.domain).",
            serial: UInt32(truncatingIfNeeded: Int(Date().timeIntervalSince1970)),
            refresh: 3600, retry: 600, expire: 86400, minimum: settings.soaMinTTL))
    }

    private func service(_ parts: [String], type: UInt16, labels: [String], state: borrowing RegistryState,
                         authorizer: ACLAuthorizer) -> DNSAnswer {
        let name: String, tag: String?
        switch parts.count {
        case 1:
            (name, tag) = (parts[0], nil)
        case 2 where parts[0].hasPrefix("_") && parts[1].hasPrefix("_"):
            // RFC 2782: `_name._tag`; `_tcp` is the default protocol, not a tag filter.
            let rfcTag = String(parts[1].dropFirst())
            (name, tag) = (String(parts[0].dropFirst()), rfcTag == "tcp" ? nil : rfcTag)
        case 2:
            (name, tag) = (parts[1], parts[0])
        default:
            return negative()
        }
        let entries = state.healthEntries(service: name).filter { entry in
            guard authorizer.allows(.service, entry.service.name, .read), authorizer.allows(.node, entry.node.name, .read) else { return false }
            guard tag.map({ wanted in entry.service.tags.contains { $0.lowercased() == wanted } }) ?? true else { return false }
            return !entry.checks.contains { $0.status == .critical || $0.status == .maintenance
                || (settings.onlyPassing && $0.status != .passing) }
        }
        guard !entries.isEmpty else { return negative() }
        let ttl = settings.ttl(service: name)
        let question = labels.joined(separator: ".") + "."
        var answer = DNSAnswer()
        if type == DNSType.srv.rawValue {
            for entry in entries {
                let address = entry.service.address.isEmpty ? entry.node.address : entry.service.address
                let warning = entry.checks.contains { $0.status == .warning }
                let weight = UInt16(clamping: warning ? entry.service.weights.warning : entry.service.weights.passing)
                let target: String
                if let ip = Self.ipBytes(address), !entry.service.address.isEmpty, entry.service.address != entry.node.address {
                    target = "\(ip.map { String(format: "%02x", $0) }.joined()).addr.\(datacenter).\(Self.domain)."
                    answer.additional.append(record(target, ttl: ttl, ip: ip))
                } else {
                    target = "\(entry.node.name).node.\(datacenter).\(Self.domain)."
                    if let ip = Self.ipBytes(address) { answer.additional.append(record(target, ttl: ttl, ip: ip)) }
                }
                answer.answers.append(DNSRecord(name: question, ttl: ttl, data: .srv(
                    priority: 1, weight: weight, port: UInt16(clamping: entry.service.port), target: target)))
            }
            return answer
        }
        var seen = Set<String>()
        for entry in entries {
            let address = entry.service.address.isEmpty ? entry.node.address : entry.service.address
            guard seen.insert(address).inserted else { continue }
            add(address, name: question, ttl: ttl, type: type, to: &answer)
        }
        if answer.answers.isEmpty { answer.authority = [soa] }
        if settings.aRecordLimit > 0 && answer.answers.count > settings.aRecordLimit {
            answer.answers = Array(answer.answers.prefix(settings.aRecordLimit))
        }
        return answer
    }

    private func node(_ parts: [String], type: UInt16, labels: [String], state: borrowing RegistryState,
                      authorizer: ACLAuthorizer) -> DNSAnswer {
        guard parts.count == 1 else { return negative() }
        let wanted = parts[0]
        guard let node = state.node(wanted) ?? state.allNodes.first(where: { $0.name.lowercased() == wanted }),
              authorizer.allows(.node, node.name, .read) else {
            return negative()
        }
        var answer = DNSAnswer()
        add(node.address, name: labels.joined(separator: ".") + ".", ttl: UInt32(settings.nodeTTL.components.seconds),
            type: type, to: &answer)
        if answer.answers.isEmpty { answer.authority = [soa] }
        return answer
    }

    /// `<hex>.addr.<dc>.consul`: the address an SRV target names.
    private func address(_ parts: [String], type: UInt16, labels: [String]) -> DNSAnswer {
        guard parts.count == 1, parts[0].count == 8 || parts[0].count == 32 else { return negative() }
        var bytes: [UInt8] = []
        var hex = Substring(parts[0])
        while !hex.isEmpty {
            guard let byte = UInt8(hex.prefix(2), radix: 16) else { return negative() }
            bytes.append(byte)
            hex = hex.dropFirst(2)
        }
        let wantedType: DNSType = bytes.count == 4 ? .a : .aaaa
        var answer = DNSAnswer()
        if type == wantedType.rawValue || type == DNSType.any.rawValue {
            answer.answers = [record(labels.joined(separator: ".") + ".", ttl: 0, ip: bytes)]
        } else {
            answer.authority = [soa]
        }
        return answer
    }

    /// Appends the A, AAAA or CNAME record of `address` that a question of `type` asks for.
    private func add(_ address: String, name: String, ttl: UInt32, type: UInt16, to answer: inout DNSAnswer) {
        let any = type == DNSType.any.rawValue
        if let ip = Self.ipBytes(address) {
            let recordType: DNSType = ip.count == 4 ? .a : .aaaa
            if any || type == recordType.rawValue { answer.answers.append(record(name, ttl: ttl, ip: ip)) }
        } else if !address.isEmpty, any || type == DNSType.a.rawValue || type == DNSType.aaaa.rawValue || type == DNSType.cname.rawValue {
            answer.answers.append(DNSRecord(name: name, ttl: ttl, data: .cname(address.hasSuffix(".") ? address : address + ".")))
        }
    }

    private func record(_ name: String, ttl: UInt32, ip: [UInt8]) -> DNSRecord {
        DNSRecord(name: name, ttl: ttl, data: ip.count == 4 ? .a(ip) : .aaaa(ip))
    }

    /// The bytes of an IPv4 or IPv6 literal, nil for a host name.
    static func ipBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: v6) { Array($0) } }
        return nil
    }
}
