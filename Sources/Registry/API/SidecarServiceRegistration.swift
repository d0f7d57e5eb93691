import TrellisCore

/// Consul Connect's `Connect.SidecarService` shorthand: registering a service with it also
/// registers `<id>-sidecar-proxy`, a `connect-proxy` for it, with Consul's defaults.
enum SidecarServiceRegistration {
    /// Consul's `sidecar_min_port` and `sidecar_max_port` defaults.
    static let ports = 21000...21255

    static func sidecarID(of parentID: String) -> String { parentID + "-sidecar-proxy" }

    /// The proxy instance for `parent` from its `SidecarService` object; its port is 0 when it is
    /// to be allocated from `ports` at write time.
    static func instance(_ r: FieldReader, parent: ServiceInstance) throws(DecodeError) -> ServiceInstance {
        var sidecar = try ServiceFields.decode(r, node: parent.node, nameField: "Name")
        if sidecar.name.isEmpty { sidecar.name = parent.name + "-sidecar-proxy" }
        if !r.has("ID") { sidecar.id = sidecarID(of: parent.id) }
        sidecar.kind = "connect-proxy"
        if !r.has("Tags") { sidecar.tags = parent.tags }
        if !r.has("Meta") { sidecar.meta = parent.meta }
        var proxy = sidecar.proxy?.objectValue ?? JSONObject()
        for (key, value) in [("DestinationServiceName", JSON.string(parent.name)), ("DestinationServiceID", .string(parent.id)),
                             ("LocalServiceAddress", .string("127.0.0.1")), ("LocalServicePort", .int(Int64(parent.port)))]
        where proxy.field(key) == nil {
            proxy.append(key, value)
        }
        sidecar.proxy = .object(proxy)
        return sidecar
    }

    /// A free port of `ports` that no other proxy on the node holds.
    static func allocatePort(on node: String, state: borrowing RegistryState) throws(CatalogError) -> Int {
        let taken = Set(state.instances(onNode: node).filter { $0.kind == "connect-proxy" }.map(\.port))
        guard let port = ports.first(where: { !taken.contains($0) }) else {
            throw .badRequest("no port provided for sidecar_service and none left in the configured range [\(ports.lowerBound), \(ports.upperBound)]")
        }
        return port
    }

    /// Consul's default check of a sidecar: its public port accepts connections.
    static func listeningCheck(_ sidecar: ServiceInstance) -> HealthCheck {
        var check = HealthCheck(node: sidecar.node, checkID: "service:\(sidecar.id):1", name: "Connect Sidecar Listening")
        check.serviceID = sidecar.id
        check.serviceName = sidecar.name
        check.serviceTags = sidecar.tags
        check.definition.tcp = HostPort.format(sidecar.address.isEmpty ? "127.0.0.1" : sidecar.address, sidecar.port)
        check.definition.interval = .seconds(10)
        return check
    }
}
