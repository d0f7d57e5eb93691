import TrellisCore

/// Autopilot's settings (`/v1/operator/autopilot/configuration`), one record kept with CAS.
extension RegistryState {
    /// Consul's defaults, reported until the settings are first written.
    static let defaultAutopilot = JSONObject([
        ("CleanupDeadServers", .bool(true)), ("LastContactThreshold", .string("200ms")), ("MaxTrailingLogs", .int(250)),
        ("MinQuorum", .int(0)), ("ServerStabilizationTime", .string("10s")), ("RedundancyZoneTag", .string("")),
        ("DisableUpgradeMigration", .bool(false)), ("UpgradeVersionTag", .string("")),
    ])

    public var autopilotConfiguration: JSON {
        var object = autopilot ?? Self.defaultAutopilot
        if autopilot == nil { object.pairs += [("CreateIndex", .int(0)), ("ModifyIndex", .int(0))] }
        return .object(object)
    }

    /// Replaces the settings (known fields only, the rest keep their value); false when `cas` is stale.
    mutating func updateAutopilotConfiguration(_ update: JSONObject, cas: UInt64?) -> Bool {
        let current = autopilotConfiguration.objectValue ?? JSONObject()
        let modifyIndex = current.field("ModifyIndex")?.uint64Value ?? 0
        if let cas, cas != modifyIndex { return false }
        var next = JSONObject(Self.defaultAutopilot.pairs.map { pair in
            (key: pair.key, value: update.field(pair.key) ?? current.field(pair.key) ?? pair.value)
        })
        next.append("CreateIndex", .unsigned(autopilot == nil ? writeIndex : current.field("CreateIndex")?.uint64Value ?? writeIndex))
        next.append("ModifyIndex", .unsigned(writeIndex))
        autopilot = next
        record(.put(table: .autopilot, key: "config", value: JSONRecord.encode(.object(next))), touching: [])
        return true
    }
}
