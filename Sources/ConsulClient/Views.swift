import Foundation
import TrellisCore

/// What clients read of the registry's answers, decoded by Codable from Consul's field names
/// (fields Trellis does not read are ignored).
public enum Views {
    /// Decodes `bytes` (a JSON answer of the registry) as `T`.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }
}

/// One item of `/v1/health/service/:name`: an instance with its node and the checks that apply.
public struct ServiceHealth: Decodable, Sendable, Equatable {
    public struct NodeView: Decodable, Sendable, Equatable {
        public let name: String
        public let address: String
        enum CodingKeys: String, CodingKey { case name = "Node", address = "Address" }
    }

    public struct ServiceView: Decodable, Sendable, Equatable {
        public let id: String
        public let address: String
        public let port: Int
        public let tags: [String]
        public let meta: [String: String]
        enum CodingKeys: String, CodingKey { case id = "ID", address = "Address", port = "Port", tags = "Tags", meta = "Meta" }
    }

    public struct CheckView: Decodable, Sendable, Equatable {
        public let checkID: String
        public let status: String
        public let output: String
        enum CodingKeys: String, CodingKey { case checkID = "CheckID", status = "Status", output = "Output" }
    }

    public let node: NodeView
    public let service: ServiceView
    public let checks: [CheckView]
    enum CodingKeys: String, CodingKey { case node = "Node", service = "Service", checks = "Checks" }

    /// Where the instance is reached: its own address, or its node's when it has none.
    public var address: String { service.address.isEmpty ? node.address : service.address }

    /// The worst status of its checks (passing without any).
    public var status: HealthStatus { HealthStatus.aggregate(checks.compactMap { HealthStatus(rawValue: $0.status) }) }
}

/// One item of `/v1/catalog/service/:name`, as far as scrapers read it.
public struct CatalogServiceNode: Decodable, Sendable, Equatable {
    public let address: String
    public let serviceID: String
    public let serviceAddress: String
    public let servicePort: Int
    public let serviceMeta: [String: String]
    enum CodingKeys: String, CodingKey {
        case address = "Address", serviceID = "ServiceID", serviceAddress = "ServiceAddress", servicePort = "ServicePort"
        case serviceMeta = "ServiceMeta"
    }

    /// Where the instance is reached: the service address, or the node's when it has none.
    public var reachableAddress: String { serviceAddress.isEmpty ? address : serviceAddress }
}
