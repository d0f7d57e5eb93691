import TrellisCore

/// Which agent services came from the registry's config file (`service`/`services`), so that a
/// reload removes those the file no longer defines, as Consul's agent does.
extension CatalogState {
    public var configServiceIDs: Set<String> { configServices }

    mutating func setConfigServiceIDs(_ ids: Set<String>) {
        guard ids != configServices else { return }
        configServices = ids
        record(.put(table: "cfgsvc", key: "ids", value: JSON.strings(ids.sorted()).serialized()), touching: [])
    }

    mutating func loadConfigServiceIDs(_ value: [UInt8]) throws {
        configServices = Set((try JSON.parse(value).arrayValue ?? []).compactMap(\.stringValue))
    }
}
