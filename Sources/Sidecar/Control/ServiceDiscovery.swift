import ConsulClient
import TrellisHTTP
import TrellisCore

/// Keeps an upstream's instance list current with a blocking query on
/// `/v1/health/service/<name>?passing`: an instance that turns critical leaves the pool as soon as
/// the registry answers.
enum ServiceDiscovery {
    static func follow(_ service: String, registry: ConsulClient, log: @escaping (String) -> Void,
                       update: @escaping @Sendable ([EndpointInfo]) -> Void) async {
        let path = "/v1/health/service/\(URLPath.escape(service))?passing=1"
        var last: [EndpointInfo]?
        await registry.watch(path, onError: { log("discovery of \(service): \($0)") }) { response in
            let endpoints = try parse(response.bodyBytes)
            if endpoints != last {
                last = endpoints
                update(endpoints)
            }
        }
    }

    /// Entries of a health answer: the service address (or the node's when empty), port, tags,
    /// and the `weight` Meta (default 1).
    static func parse(_ bytes: [UInt8]) throws -> [EndpointInfo] {
        guard let entries = try JSON.parse(bytes).arrayValue else { return [] }
        return entries.compactMap { entry in
            guard let service = entry["Service"], let id = service["ID"]?.stringValue,
                  let port = service["Port"]?.intValue, port > 0 else { return nil }
            var host = service["Address"]?.stringValue ?? ""
            if host.isEmpty { host = entry["Node"]?["Address"]?.stringValue ?? "127.0.0.1" }
            let weight = service["Meta"]?["weight"]?.stringValue.flatMap { Int($0) } ?? 1
            let tags = service["Tags"]?.arrayValue?.compactMap(\.stringValue) ?? []
            return EndpointInfo(id: id, host: host, port: Int(port), weight: weight, tags: tags)
        }.sorted { $0.id < $1.id }
    }
}
