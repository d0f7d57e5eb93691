import NIOCore
import TrellisCore
import TrellisHTTP

/// `/v1/coordinate/*`: Consul's network coordinates. Clients send their own with
/// `PUT /v1/coordinate/update`; the registry's node, which runs no Serf, sits at the origin.
extension ConsulAPI {
    func coordinateDatacenters(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let entry = JSONObject([
            ("Datacenter", .string(identity.datacenter)), ("AreaID", .string("wan")),
            ("Coordinates", .array([.object(JSONObject([
                // Consul strips the `.<dc>` suffix of the WAN names here.
                ("Node", .string(identity.nodeName)), ("Coord", RegistryState.originCoordinate),
            ]))])),
        ])
        return immediate(json(.array([.object(entry)]), context), context)
    }

    func coordinateNodes(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let own = identity.nodeName
        return blockingJSON(context, key: WatchKey.coordinates) { state in
            var names = state.coordinateNodes
            if state.coordinate(node: own) == nil { names = (names + [own]).sorted() }
            return .array(names.filter { context.acl.visible(.node, $0) }.map {
                Self.coordinateEntry($0, state.coordinate(node: $0) ?? RegistryState.originCoordinate)
            })
        }
    }

    func coordinateNode(_ context: Context) -> EventLoopFuture<HTTPResponse> {

        if let refused = refusal(context, .node, context.rest, .read) { return refused }
        let name = context.rest, own = identity.nodeName
        let (known, index) = catalog.read { ($0.coordinate(node: name) != nil, $0.watchIndex(WatchKey.coordinates)) }
        guard known || name == own else {
            var response = HTTPResponse(status: .notFound)
            ConsulHeaders.addQueryMeta(&response.headers, index: index)
            return immediate(response, context)
        }
        return blockingJSON(context, key: WatchKey.coordinates) { state in
            .array([Self.coordinateEntry(name, state.coordinate(node: name) ?? RegistryState.originCoordinate)])
        }
    }

    func coordinateUpdate(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let node: String
        let coordinate: JSON
        do {
            let r = try decodeBody(context)
            node = try r.string("Node") ?? ""
            guard let coord = try r.object("Coord") else { throw DecodeError("Coord must be given") }
            coordinate = try Self.validCoordinate(coord)
        } catch {
            return decodeFailed(error, context)
        }
        guard !node.isEmpty else { return badRequest("Must provide node", context) }
        if let refused = refusal(context, .node, node, .write) { return refused }
        return write(context, { (state: inout RegistryState) throws(CatalogError) in
            state.putCoordinate(node: node, coordinate)
        }, render: { _ in HTTPResponse(status: .ok) })
    }

    private static func coordinateEntry(_ node: String, _ coordinate: JSON) -> JSON {
        .object(JSONObject([("Node", .string(node)), ("Segment", .string("")), ("Coord", coordinate)]))
    }

    /// Consul's `Coordinate.IsValid`: eight finite dimensions and finite error, adjustment and height.
    private static func validCoordinate(_ r: FieldReader) throws(DecodeError) -> JSON {
        func number(_ value: JSON?) -> Double? {
            switch value {
            case .int(let i)?: Double(i)
            case .double(let d)? where d.isFinite: d
            default: nil
            }
        }
        guard let vec = r.value("Vec")?.arrayValue, vec.count == RegistryState.coordinateDimensions else {
            throw DecodeError("invalid coordinate: Vec must have \(RegistryState.coordinateDimensions) dimensions")
        }
        var components: [JSON] = []
        for item in vec {
            guard let value = number(item) else { throw DecodeError("invalid coordinate") }
            components.append(.double(value))
        }
        var object = JSONObject([("Vec", .array(components))])
        for field in ["Error", "Adjustment", "Height"] {
            guard let value = number(r.value(field) ?? .int(0)) else { throw DecodeError("invalid coordinate") }
            object.append(field, .double(value))
        }
        return .object(object)
    }
}
