import TrellisCore

/// One KV operation of a transaction.
struct KVTxnOp: Sendable {
    enum Verb: String, Sendable {
        case set, cas, lock, unlock, get, getTree = "get-tree", checkIndex = "check-index",
             checkSession = "check-session", checkNotExists = "check-not-exists", delete,
             deleteTree = "delete-tree", deleteCAS = "delete-cas"
    }

    let verb: Verb
    let key: String
    let value: [UInt8]
    let flags: UInt64
    let index: UInt64
    let session: String
}

extension RegistryState {
    /// Checks every KV operation against the state as the earlier operations leave it, then
    /// applies all of them, or none when any fails. Staging in an overlay keeps a KV-only
    /// transaction from copying the whole store.
    mutating func applyKVTxn(_ ops: [KVTxnOp], now: ContinuousClock.Instant) -> TxnOutcome {
        var view = TxnView(state: self)
        var errors: [(index: Int, what: String)] = []
        for (i, op) in ops.enumerated() {
            if let what = view.check(op, now: now) { errors.append((i, what)) }
        }
        if !errors.isEmpty { return .rolledBack(errors) }
        return .committed(ops.flatMap { applyChecked($0, now: now) })
    }

    /// Checks one KV operation against the state as it is now, then applies it.
    mutating func applyKV(_ op: KVTxnOp, now: ContinuousClock.Instant) throws(TxnFailure) -> [JSON] {
        var view = TxnView(state: self)
        if let what = view.check(op, now: now) { throw TxnFailure(what) }
        return applyChecked(op, now: now)
    }

    /// Applies a KV operation that was checked; returns its `{"KV": …}` results.
    private mutating func applyChecked(_ op: KVTxnOp, now: ContinuousClock.Instant) -> [JSON] {
        var entries: [JSON] = []
        switch op.verb {
        case .set, .cas, .lock, .unlock:
            let write: KVWrite = op.verb == .lock ? .lock(session: op.session)
                : op.verb == .unlock ? .unlock(session: op.session) : .set
            _ = try? applyKVWrite(key: op.key, value: op.value, flags: op.flags, cas: nil, op: write, now: now)
            if let entry = kvEntry(op.key) { entries.append(KVJSON.entry(entry, includeValue: false)) }
        case .get, .checkIndex, .checkSession:
            if let entry = kvEntry(op.key) { entries.append(KVJSON.entry(entry, includeValue: op.verb == .get)) }
        case .getTree:
            entries += kvEntries(prefix: op.key).map { KVJSON.entry($0) }
        case .checkNotExists:
            break
        case .delete, .deleteCAS:
            deleteKV(op.key)
        case .deleteTree:
            for entry in kvEntries(prefix: op.key) { deleteKV(entry.key) }
        }
        return entries.map { Self.result("KV", $0) }
    }
}

/// The KV store as a transaction's earlier operations would leave it, for checking later ones.
private struct TxnView {
    let state: RegistryState
    var overlay: [String: KVEntry?] = [:]

    init(state: RegistryState) { self.state = state }

    func entry(_ key: String) -> KVEntry? {
        if let staged = overlay[key] { return staged }
        return state.kvEntry(key)
    }

    /// Nil when `op` can be applied; otherwise Consul's reason.
    mutating func check(_ op: KVTxnOp, now: ContinuousClock.Instant) -> String? {
        let current = entry(op.key)
        switch op.verb {
        case .set:
            stage(op, current)
        case .cas:
            if op.index == 0 ? current != nil : current?.modifyIndex != op.index {
                return "failed to set key \"\(op.key)\", index is stale"
            }
            stage(op, current)
        case .lock:
            if let reason = state.lockRefusal(session: op.session) { return reason }
            if let holder = current?.session, !holder.isEmpty, holder != op.session {
                return "failed to lock key \"\(op.key)\", lock is already held"
            }
            if current?.session != op.session && state.isLockDelayed(op.key, now: now) {
                return "failed to lock key \"\(op.key)\", lock-delay is in effect"
            }
            var next = stage(op, current)
            next.session = op.session
            overlay[op.key] = next
        case .unlock:
            if op.session.isEmpty { return "missing session" }
            guard current?.session == op.session else {
                return "failed to unlock key \"\(op.key)\", lock isn't held, or is held by another session"
            }
            var next = stage(op, current)
            next.session = ""
            overlay[op.key] = next
        case .get, .checkIndex, .checkSession:
            guard let current else { return "key \"\(op.key)\" doesn't exist" }
            if op.verb == .checkIndex && current.modifyIndex != op.index {
                return "current modify index \(current.modifyIndex) != \(op.index)"
            }
            if op.verb == .checkSession && current.session != op.session {
                return "current session \"\(current.session)\" != \"\(op.session)\""
            }
        case .checkNotExists:
            if current != nil { return "key \"\(op.key)\" exists" }
        case .getTree:
            break
        case .delete:
            overlay[op.key] = .some(nil)
        case .deleteCAS:
            guard let current, current.modifyIndex == op.index else {
                return "failed to delete key \"\(op.key)\", index is stale"
            }
            overlay[op.key] = .some(nil)
        case .deleteTree:
            for existing in state.kvEntries(prefix: op.key) { overlay[existing.key] = .some(nil) }
            for key in overlay.keys where key.hasPrefix(op.key) { overlay[key] = .some(nil) }
        }
        return nil
    }

    @discardableResult
    private mutating func stage(_ op: KVTxnOp, _ current: KVEntry?) -> KVEntry {
        var next = current ?? KVEntry(key: op.key, value: op.value)
        next.value = op.value
        next.flags = op.flags
        overlay[op.key] = next
        return next
    }
}
