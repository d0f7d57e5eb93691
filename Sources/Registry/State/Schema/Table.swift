/// The tables of the registry's durable state, one record type each.
///
/// A raw value is the name the table's records are stored under (SQLite's `tbl` column, the key
/// segment after the prefix in etcd); it is part of the on-disk format and never changes.
public enum Table: String, CaseIterable, Sendable {
    /// `Node`, by node name (`NodeRecord`).
    case node
    /// `ServiceInstance`, by `node\nserviceID` (`ServiceRecord`).
    case service
    /// `HealthCheck`, by `node\ncheckID` (`CheckRecord`).
    case check
    /// `KVEntry`, by key (`KVRecord`).
    case kv
    /// The index at which a KV key was deleted, by key (`IndexRecord`).
    case kvTombstone = "kvtomb"
    /// `Session`, by session ID (`SessionRecord`).
    case session
    /// Empty markers announcing TTL session renewals to the registries sharing an etcd store.
    case sessionRenewal = "renew"
    /// The index of each blocking-query key, by watch key (`IndexRecord`).
    case watchIndex = "watch"
    /// The catalog's global index, under the key `index` (`IndexRecord`).
    case meta
    /// A node's network coordinate, by node name (`JSONRecord`).
    case coordinate = "coord"
    /// Autopilot's settings, under the key `config` (`JSONRecord`).
    case autopilot
    /// A config entry, by `kind\nname` (`JSONRecord`).
    case configEntry = "config"
    /// IDs of the agent services the config file defines, under the key `ids` (`StringSetRecord`).
    case configServices = "cfgsvc"
    /// A root of the certificate authority, by root ID (`CARootRecord`).
    case caRoot = "caroot"
    /// The certificate authority's configuration, under the key `config` (`CAConfigurationRecord`).
    case caConfig = "caconfig"
    /// An intention, by `source\ndestination` (`IntentionRecord`).
    case intention = "ixn"
    /// An ACL token, by accessor ID (`ACLRecords.token`).
    case aclToken = "acltoken"
    /// An ACL policy, by ID (`ACLRecords.policy`).
    case aclPolicy = "aclpolicy"
    /// An ACL role, by ID (`ACLRecords.role`).
    case aclRole = "aclrole"
    /// An ACL auth method, by name (`JSONRecord`).
    case aclAuthMethod = "aclauth"
    /// An ACL binding rule, by ID (`JSONRecord`).
    case aclBindingRule = "aclbind"
    /// The index of the ACL bootstrap, under the key `bootstrap` (`IndexRecord`).
    case aclBootstrap = "aclboot"

    /// The key of a record identified by two names (`node\nid`).
    static func pairKey(_ first: String, _ second: String) -> String { first + "\n" + second }

    /// The two names of a `pairKey`; nil when `key` is not one.
    static func splitPairKey(_ key: String) -> (String, String)? {
        guard let newline = key.firstIndex(of: "\n") else { return nil }
        return (String(key[..<newline]), String(key[key.index(after: newline)...]))
    }
}
