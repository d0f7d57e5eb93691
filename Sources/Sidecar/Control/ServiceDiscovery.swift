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
    /// the `weight` Meta (default 1), and whether the instance takes mutual TLS.
    static func parse(_ bytes: [UInt8]) throws -> [EndpointInfo] {
        try Views.decode([ServiceHealth].self, from: bytes).compactMap { entry in
            guard entry.service.port > 0 else { return nil }
            let host = entry.address.isEmpty ? "127.0.0.1" : entry.address
            return EndpointInfo(id: entry.service.id, host: host, port: entry.service.port,
                                weight: entry.service.meta["weight"].flatMap { Int($0) } ?? 1, tags: entry.service.tags,
                                mtls: entry.service.meta[WellKnownNames.sidecarMTLSMeta].flatMap(MTLSMode.init)?.acceptsTLS ?? false)
        }.sorted { $0.id < $1.id }
    }
}
