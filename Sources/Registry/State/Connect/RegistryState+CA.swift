import TrellisCore

/// The certificate authority's configuration and roots: one active root signs, roots rotated out
/// stay trusted until the last leaf they signed has expired.
extension RegistryState {

    public var caConfiguration: CAConfiguration? { caConfig }

    /// The root that signs new leaves.
    public var activeRoot: CARoot? { caRoots.values.first(where: \.active) }

    /// The roots a peer's chain may end in at `now` (seconds since 1970), oldest first.
    public func trustedRoots(now: Int) -> [CARoot] {
        caRoots.values.filter { $0.active || $0.retiresAt > now }.sorted { ($0.createIndex, $0.id) < ($1.createIndex, $1.id) }
    }

    /// Creates the CA on first start: `configuration` and its `root`. A no-op when another
    /// registry sharing the store created one first.
    mutating func initializeCA(_ configuration: CAConfiguration, root: CARoot) {
        guard caConfig == nil else { return }
        var configuration = configuration
        configuration.createIndex = writeIndex
        configuration.modifyIndex = writeIndex
        putCAConfiguration(configuration)
        putRoot(root, active: true)
    }

    /// Replaces the configuration (keeping the cluster ID) and, with `newRoot`, rotates to it: the
    /// old root stays trusted for one leaf lifetime more. Roots past that time are dropped.
    mutating func updateCA(provider: String, config: JSON, newRoot: CARoot?, now: Int) throws(CatalogError) {
        guard var configuration = caConfig else { throw .rejected("the certificate authority is not initialized yet") }
        let previousLeafTTL = configuration.leafTTL
        configuration.provider = provider
        configuration.config = config
        configuration.modifyIndex = writeIndex
        putCAConfiguration(configuration)
        for root in caRoots.values where !root.active && root.retiresAt <= now {
            caRoots[root.id] = nil
            record(.delete(table: .caRoot, key: root.id), touching: [WatchKey.connectCA])
        }
        guard let newRoot, newRoot.id != activeRoot?.id else { return }
        if var old = activeRoot {
            old.active = false
            old.retiresAt = now + Int(max(previousLeafTTL, configuration.leafTTL).components.seconds) + 1
            old.modifyIndex = writeIndex
            caRoots[old.id] = old
            record(.put(table: .caRoot, key: old.id, value: CARootRecord.encode(old)), touching: [WatchKey.connectCA])
        }
        putRoot(newRoot, active: true)
    }

    private mutating func putCAConfiguration(_ configuration: CAConfiguration) {
        caConfig = configuration
        record(.put(table: .caConfig, key: CAConfigurationRecord.key, value: CAConfigurationRecord.encode(configuration)),
               touching: [WatchKey.connectCA])
    }

    private mutating func putRoot(_ root: CARoot, active: Bool) {
        var root = root
        root.active = active
        root.retiresAt = 0
        root.createIndex = caRoots[root.id]?.createIndex ?? writeIndex
        root.modifyIndex = writeIndex
        caRoots[root.id] = root
        record(.put(table: .caRoot, key: root.id, value: CARootRecord.encode(root)), touching: [WatchKey.connectCA])
    }
}

extension WatchKey {
    /// The CA's roots and configuration (`/v1/connect/ca/*`, leaf certificates).
    public static let connectCA = "connect-ca"
    public static let intentions = "intentions"
}
