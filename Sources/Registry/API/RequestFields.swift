import TrellisCore

/// Reads the service part of a registration body (agent `Name` or catalog `Service`).
enum ServiceFields {
    static func decode(_ r: FieldReader, node: String, nameField: String) throws(DecodeError) -> ServiceInstance {
        let name = try r.string(nameField) ?? ""
        let id = try r.string("ID") ?? ""
        var s = ServiceInstance(node: node, id: id.isEmpty ? name : id, name: name)
        s.tags = try r.strings("Tags") ?? []
        s.address = try r.string("Address") ?? ""
        s.port = try r.int("Port") ?? 0
        guard (0...65535).contains(s.port) else { throw DecodeError("Port must be between 0 and 65535") }
        s.meta = try r.stringMap("Meta") ?? [:]
        s.enableTagOverride = try r.bool("EnableTagOverride") ?? false
        if let weights = try r.object("Weights") {
            s.weights = .init(passing: try weights.int("Passing") ?? 0, warning: try weights.int("Warning") ?? 0)
        }
        s.kind = try r.string("Kind") ?? ""
        s.socketPath = try r.string("SocketPath") ?? ""
        s.proxy = try r.object("Proxy").map { .object($0.object) }
        s.connect = try r.object("Connect").map { .object($0.object) }
        s.locality = try r.object("Locality").map { .object($0.object) }
        if let tagged = try r.object("TaggedAddresses") {
            for (key, value) in tagged.object.pairs {
                let entry = try FieldReader(value, context: "TaggedAddresses.\(key)")
                s.taggedAddresses[key] = ServiceAddress(address: try entry.string("Address") ?? "",
                                                        port: try entry.int("Port") ?? 0)
            }
        }
        for (key, _) in s.meta where key.isEmpty || key.count > 128 {
            throw DecodeError("Invalid service: Key names must be between 1 and 128 characters")
        }
        return s
    }

    /// Catalog registrations (and transactions) do not refuse weights: like Consul's
    /// `NodeService.ToServiceNode`, they keep valid ones and store `{1, 1}` instead of invalid ones,
    /// which is what HashiCorp's client sends when it sets none (`{"Passing": 0, "Warning": 0}`).
    static func catalogWeights(_ s: ServiceInstance) -> ServiceInstance {
        var s = s
        if s.weights.invalidReason != nil { s.weights = .init() }
        return s
    }
}

/// A check as submitted in a registration: its identity, initial state and how to run it.
struct CheckRequest {
    var id: String
    var name: String
    var notes: String
    var serviceID: String
    var status: HealthStatus?
    var definition: CheckDefinition

    /// The check as the catalog stores it on `node` (catalog registrations and transactions): its
    /// ID falls back to its name, its status to critical; the catalog does not run it.
    func catalogCheck(node: String) -> HealthCheck {
        var check = HealthCheck(node: node, checkID: id.isEmpty ? name : id, name: name)
        check.status = status ?? .critical
        check.notes = notes
        check.serviceID = serviceID
        check.definition = definition
        return check
    }
}

/// Reads check definitions and validates them with Consul's rules and messages.
enum CheckFields {
    static let invalidCheckMessage = "Must provide TTL or HTTP/TCP and Interval"

    static func decodeDefinition(_ r: FieldReader) throws(DecodeError) -> CheckDefinition {
        var d = CheckDefinition()
        d.http = try r.string("HTTP") ?? ""
        d.method = try r.string("Method") ?? ""
        d.body = try r.string("Body") ?? ""
        d.tlsSkipVerify = try r.bool("TLSSkipVerify") ?? false
        d.tcp = try r.string("TCP") ?? ""
        d.udp = try r.string("UDP") ?? ""
        d.ttl = try r.duration("TTL")
        d.interval = try r.duration("Interval")
        d.timeout = try r.duration("Timeout")
        d.deregisterCriticalServiceAfter = try r.duration("DeregisterCriticalServiceAfter")
        d.successBeforePassing = try r.int("SuccessBeforePassing") ?? 0
        d.failuresBeforeWarning = try r.int("FailuresBeforeWarning") ?? 0
        d.failuresBeforeCritical = try r.int("FailuresBeforeCritical") ?? 0
        if let header = try r.object("Header") {
            for (key, value) in header.object.pairs {
                guard let items = value.arrayValue, items.allSatisfy({ $0.stringValue != nil }) else {
                    throw DecodeError("Header.\(key) must be an array of strings")
                }
                d.header[key] = items.compactMap(\.stringValue)
            }
        }
        return d
    }

    static let scriptsDisabledMessage = "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' to true"

    /// Decodes one check of a registration body; its ID comes from `CheckID` or, failing that, `ID`.
    /// `Args` (or `ScriptArgs`) are taken only when `scripts` is on.
    static func decode(_ r: FieldReader, scripts: Bool = false) throws(DecodeError) -> CheckRequest {
        var args = try r.strings("Args") ?? []
        if args.isEmpty { args = try r.strings("ScriptArgs") ?? [] }
        if r.has("Script") || (!args.isEmpty && !scripts) { throw DecodeError(scriptsDisabledMessage) }
        for unsupported in ["GRPC", "H2PING", "UDP", "DockerContainerID", "AliasService", "AliasNode", "OSService"]
        where r.has(unsupported) {
            throw DecodeError("\(unsupported) checks are not supported by this registry; use HTTP, TCP or TTL")
        }
        var status: HealthStatus?
        if let text = try r.string("Status"), !text.isEmpty {
            guard let parsed = HealthStatus(rawValue: text), parsed != .maintenance else {
                throw DecodeError("Status for checks must 'passing', 'warning', 'critical'")
            }
            status = parsed
        }
        var id = try r.string("CheckID") ?? ""
        if id.isEmpty { id = try r.string("ID") ?? "" }
        var definition = try decodeDefinition(r)
        definition.args = args
        if let nested = try r.object("Definition") {
            let inner = try decodeDefinition(nested)
            if definition.type.isEmpty { definition = inner }
        }
        return CheckRequest(id: id, name: try r.string("Name") ?? "", notes: try r.string("Notes") ?? "",
                            serviceID: try r.string("ServiceID") ?? "", status: status, definition: definition)
    }

    /// Consul's `CheckType.Validate` for checks the agent runs.
    static func validateRunnable(_ d: CheckDefinition) throws(DecodeError) -> CheckDefinition {
        var d = d
        let runnable = !d.http.isEmpty || !d.tcp.isEmpty || !d.args.isEmpty
        if d.ttl == nil && !(runnable && d.interval != nil) { throw DecodeError(invalidCheckMessage) }
        if d.ttl != nil && runnable { throw DecodeError("TTL must not be combined with HTTP, TCP or Args") }
        if !d.http.isEmpty {
            guard d.http.hasPrefix("http://") || d.http.hasPrefix("https://") else {
                throw DecodeError("HTTP check URL must start with http:// or https://: \"\(d.http)\"")
            }
        }
        if let interval = d.interval, interval < .seconds(1) { d.interval = .seconds(1) }
        if let timeout = d.timeout, timeout <= .zero { throw DecodeError("Timeout must be positive") }
        if let ttl = d.ttl, ttl <= .zero { throw DecodeError("TTL must be > 0 for TTL checks") }
        return d
    }
}
