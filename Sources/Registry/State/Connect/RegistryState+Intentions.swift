import TrellisCore

/// Intentions: at most one per source and destination, evaluated by Consul's precedence.
extension RegistryState {

    /// Every intention in evaluation order.
    public var allIntentions: [Intention] { intentions.values.sorted(by: Intention.evaluatedBefore) }

    public func intention(source: String, destination: String) -> Intention? {
        intentions[Table.pairKey(source, destination)]
    }

    public func intention(id: String) -> Intention? {
        id.isEmpty ? nil : intentions.values.first { $0.id == id }
    }

    /// The intentions that apply to `name` as a source or as a destination, in evaluation order.
    public func matchingIntentions(bySource: Bool, name: String) -> [Intention] {
        allIntentions.filter { intention in
            let side = bySource ? intention.sourceName : intention.destinationName
            return side == name || side == Intention.wildcard
        }
    }

    /// The intention that decides a connection from `source` to `destination`, nil when none applies.
    public func decidingIntention(source: String, destination: String) -> Intention? {
        allIntentions.first { $0.matches(source: source, destination: destination) }
    }

    /// Creates or replaces the intention of its source and destination, keeping the ID, creation
    /// time and index of the one it replaces.
    mutating func upsertIntention(_ intention: Intention, now: String) {
        var stored = intention
        let existing = self.intention(source: intention.sourceName, destination: intention.destinationName)
        if stored.id.isEmpty { stored.id = existing?.id ?? "" }
        stored.createdAt = existing?.createdAt ?? (stored.id.isEmpty ? "" : now)
        stored.updatedAt = stored.id.isEmpty ? "" : now
        stored.createIndex = existing?.createIndex ?? writeIndex
        stored.modifyIndex = writeIndex
        put(stored)
    }

    /// `POST /v1/connect/intentions`: a new intention with an ID; refused when its pair exists.
    mutating func createIntention(_ intention: Intention, now: String) throws(CatalogError) {
        if let existing = self.intention(source: intention.sourceName, destination: intention.destinationName) {
            throw .rejected("duplicate intention found: \(existing.summary)")
        }
        upsertIntention(intention, now: now)
    }

    /// `PUT /v1/connect/intentions/:id`: replaces the intention with that ID, which may move it to
    /// another source or destination unless that pair has an intention already.
    mutating func updateIntention(id: String, with intention: Intention, now: String) throws(CatalogError) {
        guard let existing = self.intention(id: id) else { throw .rejected("Cannot modify non-existent intention: '\(id)'") }
        let movesTo = self.intention(source: intention.sourceName, destination: intention.destinationName)
        if let movesTo, movesTo.id != id { throw .rejected("duplicate intention found: \(movesTo.summary)") }
        if existing.sourceName != intention.sourceName || existing.destinationName != intention.destinationName {
            deleteIntention(source: existing.sourceName, destination: existing.destinationName)
        }
        var stored = intention
        stored.id = id
        stored.createdAt = existing.createdAt
        stored.updatedAt = now
        stored.createIndex = existing.createIndex
        stored.modifyIndex = writeIndex
        put(stored)
    }

    mutating func deleteIntention(source: String, destination: String) {
        let key = Table.pairKey(source, destination)
        guard intentions[key] != nil else { return }
        intentions[key] = nil
        record(.delete(table: .intention, key: key), touching: [WatchKey.intentions])
    }

    /// `DELETE /v1/connect/intentions/:id`.
    mutating func deleteIntention(id: String) throws(CatalogError) {
        guard let existing = intention(id: id) else { throw .rejected("Cannot delete non-existent intention: '\(id)'") }
        deleteIntention(source: existing.sourceName, destination: existing.destinationName)
    }

    private mutating func put(_ intention: Intention) {
        let key = IntentionRecord.key(intention)
        intentions[key] = intention
        record(.put(table: .intention, key: key, value: IntentionRecord.encode(intention)), touching: [WatchKey.intentions])
    }
}
