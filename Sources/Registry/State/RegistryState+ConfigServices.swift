import TrellisCore

/// Which agent services came from the registry's config file (`service`/`services`), so that a
/// reload removes those the file no longer defines, as Consul's agent does.
extension RegistryState {
    public var configServiceIDs: Set<String> { configServices }

    mutating func setConfigServiceIDs(_ ids: Set<String>) {
        guard ids != configServices else { return }
        configServices = ids
        record(.put(table: .configServices, key: "ids", value: StringSetRecord.encode(ids)), touching: [])
    }
}
