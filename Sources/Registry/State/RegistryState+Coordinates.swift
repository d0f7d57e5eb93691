import TrellisCore

/// Network coordinates of nodes (`/v1/coordinate/*`), kept per node and removed with it, as in Consul.
extension RegistryState {
    /// Consul's coordinates have eight dimensions.
    static let coordinateDimensions = 8
    /// The coordinate of a node that has sent none: the origin, with Serf's initial error and height.
    static let originCoordinate = JSON.object(JSONObject([
        ("Vec", .array(Array(repeating: .double(0), count: coordinateDimensions))), ("Error", .double(1.5)),
        ("Adjustment", .double(0)), ("Height", .double(1e-05)),
    ]))

    public func coordinate(node: String) -> JSON? { coordinates[node] }

    /// Nodes with a coordinate, by name.
    public var coordinateNodes: [String] { coordinates.keys.sorted() }

    /// Stores a node's coordinate; updates for nodes the catalog does not know are dropped, as Consul drops them.
    mutating func putCoordinate(node: String, _ coordinate: JSON) {
        guard catalog.nodes[node] != nil, coordinates[node] != coordinate else { return }
        coordinates[node] = coordinate
        record(.put(table: .coordinate, key: node, value: JSONRecord.encode(coordinate)), touching: [WatchKey.coordinates])
    }

    mutating func removeCoordinate(node: String) {
        guard coordinates.removeValue(forKey: node) != nil else { return }
        record(.delete(table: .coordinate, key: node), touching: [WatchKey.coordinates])
    }
}

extension WatchKey {
    public static let coordinates = "coordinates"
}
