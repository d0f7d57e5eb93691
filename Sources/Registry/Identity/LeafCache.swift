import Foundation
import Synchronization
import TrellisCore

/// The leaf certificate each service was last given, reissued when the active root changes or the
/// leaf reaches its renewal time (half its life plus up to a tenth of jitter), as Consul's agent
/// cache does; a blocking leaf query returns when that happens.
final class LeafCache: Sendable {
    /// A leaf, the index it is served under (`X-Consul-Index`, `ModifyIndex`) and when it is renewed.
    struct Entry: Sendable {
        let leaf: LeafCertificate
        let index: UInt64
        let createIndex: UInt64
        let renewAt: Date
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let datacenter: String

    init(datacenter: String) { self.datacenter = datacenter }

    /// The current leaf of `service`, issued now when there is none to reuse.
    func leaf(for service: String, catalog: Catalog, now: Date = Date()) throws -> Entry {
        let (root, configuration, index) = catalog.read { ($0.activeRoot, $0.caConfiguration, $0.index) }
        guard let root, let configuration else { throw CAError("the certificate authority is not initialized yet") }
        return try entries.withLock { entries in
            let previous = entries[service]
            if let previous, previous.leaf.rootID == root.id, now < previous.renewAt { return previous }
            let ttl = configuration.leafTTL
            let leaf = try CertificateAuthority.signLeaf(service: service, trustDomain: configuration.trustDomain,
                                                         datacenter: datacenter, root: root, validFor: ttl, now: now)
            let life = TimeInterval(ttl.components.seconds)
            let entryIndex = max(index, (previous?.index ?? 0) + 1)
            let entry = Entry(leaf: leaf, index: entryIndex, createIndex: previous?.createIndex ?? entryIndex,
                              renewAt: now + life * Double.random(in: 0.5...0.6))
            entries[service] = entry
            return entry
        }
    }
}
