import TrellisCore

/// A root certificate of the mesh's certificate authority, with the key that signs its leaves.
///
/// The key is kept in the store (so that every registry sharing it signs with the same root) and
/// never leaves the registry through its API.
public struct CARoot: Sendable, Equatable {
    /// The certificate's SHA-1 fingerprint in colon hex, as Consul names roots.
    public var id = ""
    public var name = ""
    public var serialNumber: UInt64 = 0
    /// The root key's subject key identifier in colon hex.
    public var signingKeyID = ""
    /// Validity in seconds since 1970.
    public var notBefore = 0
    public var notAfter = 0
    public var certificatePEM = ""
    public var privateKeyPEM = ""
    public var active = false
    /// For a root rotated out: when the last leaf it signed expires, after which it is no longer
    /// trusted (seconds since 1970; 0 while active).
    public var retiresAt = 0
    public var createIndex: UInt64 = 0
    public var modifyIndex: UInt64 = 0
}

/// The CA's configuration (`/v1/connect/ca/configuration`) and the cluster ID behind the trust domain.
public struct CAConfiguration: Sendable, Equatable {
    public var clusterID = ""
    public var provider = "consul"
    /// The provider's settings as given (`LeafCertTTL`, …), without `PrivateKey` and `RootCert`.
    public var config: JSON = .object(JSONObject([]))
    public var createIndex: UInt64 = 0
    public var modifyIndex: UInt64 = 0

    public static let defaultLeafTTL: Duration = .seconds(72 * 3600)
    public static let defaultRootTTL: Duration = .seconds(87_600 * 3600)

    /// `<cluster id>.consul`: the SPIFFE trust domain of every identity this CA signs.
    public var trustDomain: String { clusterID + ".consul" }

    /// How long leaves are valid (`LeafCertTTL`, default 72h).
    public var leafTTL: Duration { duration("LeafCertTTL") ?? Self.defaultLeafTTL }
    /// How long generated roots are valid (`RootCertTTL`, default 10 years).
    public var rootTTL: Duration { duration("RootCertTTL") ?? Self.defaultRootTTL }

    private func duration(_ name: String) -> Duration? {
        config.objectValue?.field(name)?.stringValue.flatMap(GoDuration.parseNanoseconds).map { .nanoseconds($0) }
    }
}

/// The `caroot` table, by root ID. Layout 1.
enum CARootRecord {
    static let codec = RecordCodec<CARoot>(table: .caRoot, empty: { CARoot() }, layouts: [
        RecordLayout([
            .string("ID", \.id), .string("Name", \.name), .index("SerialNumber", \.serialNumber),
            .string("SigningKeyID", \.signingKeyID), .int("NotBefore", \.notBefore), .int("NotAfter", \.notAfter),
            .string("RootCert", \.certificatePEM), .string("PrivateKey", \.privateKeyPEM), .bool("Active", \.active),
            .int("RetiresAt", \.retiresAt), .index("CreateIndex", \.createIndex), .index("ModifyIndex", \.modifyIndex),
        ]),
    ])

    static func encode(_ root: CARoot) -> [UInt8] { codec.encode(root) }
    static func decode(_ bytes: [UInt8]) throws(RecordError) -> CARoot { try codec.decode(bytes) }
}

/// The `caconfig` table, one record under the key `config`. Layout 1.
enum CAConfigurationRecord {
    static let key = "config"
    static let codec = RecordCodec<CAConfiguration>(table: .caConfig, empty: { CAConfiguration() }, layouts: [
        RecordLayout([
            .string("ClusterID", \.clusterID), .string("Provider", \.provider),
            RecordField(name: "Config", write: { $0.config }, read: { record, r throws(DecodeError) in
                if let value = r.value("Config") { record.config = value }
            }),
            .index("CreateIndex", \.createIndex), .index("ModifyIndex", \.modifyIndex),
        ]),
    ])

    static func encode(_ config: CAConfiguration) -> [UInt8] { codec.encode(config) }
    static func decode(_ bytes: [UInt8]) throws(RecordError) -> CAConfiguration { try codec.decode(bytes) }
}
