import Foundation
import NIOCore
import TrellisCore
import TrellisHTTP

/// `/v1/connect/ca/*` and the agent's CA endpoints: roots, configuration (with root rotation) and
/// leaf certificates, as Consul's built-in provider serves them.
extension ConsulAPI {
    /// The configuration a CA starts with, in the form `GET /v1/connect/ca/configuration` shows.
    static let defaultCAConfig: JSONObject = JSONObject([
        ("LeafCertTTL", .string("72h")), ("IntermediateCertTTL", .string("8760h")), ("RootCertTTL", .string("87600h")),
        ("RotationPeriod", .string("2160h")), ("PrivateKeyType", .string("ec")), ("PrivateKeyBits", .int(256)),
    ])
    /// The shortest and longest `LeafCertTTL` accepted (Consul's minimum is 1h; shorter leaves help tests and drills).
    static let leafTTLRange: ClosedRange<Duration> = .seconds(60)...(.seconds(8760 * 3600))

    /// Creates the CA (cluster ID, configuration, first root) unless the store holds one.
    func initializeCA() async throws {
        guard catalog.read({ $0.caConfiguration }) == nil else { return }
        var configuration = CAConfiguration()
        configuration.clusterID = UUID().uuidString.lowercased()
        configuration.config = .object(Self.defaultCAConfig)
        let root = try CertificateAuthority.makeRoot(trustDomain: configuration.trustDomain, clusterID: configuration.clusterID,
                                                     validFor: configuration.rootTTL, now: Date())
        try await catalog.write { [configuration, root] (state: inout RegistryState) throws(CatalogError) in
            state.initializeCA(configuration, root: root)
        }
    }

    /// `GET /v1/connect/ca/roots` and `/v1/agent/connect/ca/roots`; `?pem=true` answers the PEM chain.
    func caRoots(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        var pem = false
        if let text = context.request.query["pem"], !text.isEmpty {
            guard let value = GoBool.parse(text) else { return badRequest("The 'pem' query parameter must be a boolean value", context) }
            pem = value
        }
        guard pem else {
            return blockingJSON(context, key: WatchKey.connectCA) { state in
                let clusterID = state.caConfiguration?.clusterID ?? ""
                return .object(JSONObject([
                    ("ActiveRootID", .string(state.activeRoot?.id ?? "")), ("TrustDomain", .string(state.caConfiguration?.trustDomain ?? "")),
                    ("Roots", .array(state.trustedRoots(now: Self.unixNow()).map { Self.rootJSON($0, clusterID: clusterID) })),
                ]))
            }
        }
        return BlockingQuery.run(context.request, catalog: catalog, key: WatchKey.connectCA, on: context.loop,
                                 cancellation: context.cancellation) { state in
            var response = HTTPResponse(body: ByteBuffer(string: state.trustedRoots(now: Self.unixNow()).map(\.certificatePEM)
                .joined(separator: "\n")))
            response.headers.add(name: "Content-Type", value: "application/pem-certificate-chain")
            return response
        }
    }

    /// `GET|PUT /v1/connect/ca/configuration`.
    func caConfiguration(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        if let refused = refusal(context, .`operator`, "", context.request.method == .PUT ? .write : .read) { return refused }
        guard context.request.method == .PUT else {
            // The CA is initialized before the API listens, so a configuration is always there.
            return blockingJSON(context, key: WatchKey.connectCA) { state in
                state.caConfiguration.map { configuration in
                    .object(JSONObject([
                        ("Provider", .string(configuration.provider)), ("Config", configuration.config), ("State", .null),
                        ("ForceWithoutCrossSigning", .bool(false)),
                        ("CreateIndex", .unsigned(configuration.createIndex)), ("ModifyIndex", .unsigned(configuration.modifyIndex)),
                    ]))
                } ?? .null
            }
        }
        guard let current = catalog.read({ $0.caConfiguration }) else {
            return immediate(.text(.internalServerError, "CA is not initialized"), context)
        }
        let update: (config: JSON, root: CARoot?)
        do {
            update = try Self.caUpdate(try decodeBody(context), current: current)
        } catch let error as DecodeError {
            return decodeFailed(error, context)
        } catch {
            return badRequest("\(error)", context)
        }
        let now = Self.unixNow()
        return write(context, { (state: inout RegistryState) throws(CatalogError) in
            try state.updateCA(provider: "consul", config: update.config, newRoot: update.root, now: now)
        }, render: { _ in HTTPResponse(status: .ok) })
    }

    /// Checks a configuration body: the provider settings to store and, when it brings a new
    /// `PrivateKey` (and `RootCert`), the root to rotate to.
    private static func caUpdate(_ body: FieldReader, current: CAConfiguration) throws -> (config: JSON, root: CARoot?) {
        let provider = try body.string("Provider") ?? ""
        guard provider == "consul" else {
            throw CAError("unsupported CA provider \(JSON.string(provider).text): this registry runs Consul's built-in provider, \"consul\"")
        }
        var settings = defaultCAConfig
        let given = try body.object("Config")
        for (key, value) in given?.object.pairs ?? [] where !["privatekey", "rootcert"].contains(key.lowercased()) {
            settings.pairs.removeAll { $0.key.lowercased() == key.lowercased() }
            settings.append(key, value)
        }
        var configuration = current
        configuration.config = .object(settings)
        for name in ["LeafCertTTL", "RootCertTTL", "IntermediateCertTTL", "RotationPeriod"] {
            guard let value = settings.field(name) else { continue }
            guard let text = value.stringValue, let nanos = GoDuration.parseNanoseconds(text), nanos > 0 else {
                throw CAError("\(name) must be a duration such as \"72h\", got \(value.text)")
            }
        }
        guard leafTTLRange.contains(configuration.leafTTL) else {
            throw CAError("LeafCertTTL must be between \(GoDuration.format(leafTTLRange.lowerBound)) and \(GoDuration.format(leafTTLRange.upperBound))")
        }
        guard configuration.rootTTL > configuration.leafTTL else { throw CAError("RootCertTTL must be longer than LeafCertTTL") }
        if let type = settings.field("PrivateKeyType"), type.stringValue != "ec" {
            throw CAError("PrivateKeyType must be \"ec\": this CA signs with ECDSA P-256")
        }
        if let bits = settings.field("PrivateKeyBits"), bits.intValue != 256 {
            throw CAError("PrivateKeyBits must be 256 for PrivateKeyType \"ec\"")
        }
        guard let keyPEM = try given?.string("PrivateKey"), !keyPEM.isEmpty else {
            if let cert = try given?.string("RootCert"), !cert.isEmpty { throw CAError("RootCert requires its PrivateKey") }
            return (configuration.config, nil)
        }
        let root = try CertificateAuthority.importRoot(keyPEM: keyPEM, certificatePEM: try given?.string("RootCert"),
                                                       trustDomain: current.trustDomain, clusterID: current.clusterID,
                                                       validFor: configuration.rootTTL, now: Date())
        return (configuration.config, root)
    }

    /// `GET /v1/agent/connect/ca/leaf/:service`: the service's leaf; `?index=` blocks until it is reissued.
    func agentLeaf(_ context: Context) -> EventLoopFuture<HTTPResponse> {
        let service = context.rest
        guard !service.isEmpty, !service.contains("/"), service.utf8.count <= 256 else {
            return badRequest("Invalid service name: \(JSON.string(service).text)", context)
        }
        if let refused = refusal(context, .service, service, .write) { return refused }
        let parameters: BlockingParameters
        do { parameters = try BlockingParameters(context.request.query) } catch { return badRequest(error.description, context) }
        return LeafWait.run(service: service, wanted: parameters.minIndex, wait: parameters.wait, cache: leafCache,
                            catalog: catalog, loop: context.loop, cancellation: context.cancellation,
                            pretty: context.request.query.has("pretty"))
    }

    static func rootJSON(_ root: CARoot, clusterID: String) -> JSON {
        .object(JSONObject([
            ("ID", .string(root.id)), ("Name", .string(root.name)), ("SerialNumber", .unsigned(root.serialNumber)),
            ("SigningKeyID", .string(root.signingKeyID)), ("ExternalTrustDomain", .string(clusterID)),
            ("NotBefore", .string(rfc3339(root.notBefore))), ("NotAfter", .string(rfc3339(root.notAfter))),
            ("RootCert", .string(root.certificatePEM)), ("IntermediateCerts", .null), ("Active", .bool(root.active)),
            ("PrivateKeyType", .string("ec")), ("PrivateKeyBits", .int(256)),
            ("CreateIndex", .unsigned(root.createIndex)), ("ModifyIndex", .unsigned(root.modifyIndex)),
        ]))
    }

    static func unixNow() -> Int { Int(Date().timeIntervalSince1970) }

    static func rfc3339(_ seconds: Int) -> String { Date.ISO8601FormatStyle().format(Date(timeIntervalSince1970: TimeInterval(seconds))) }
}

/// A blocking leaf query: answers once the service's leaf differs from the one the client has
/// (`?index=`), checking again when the CA changes and when the leaf's renewal time comes.
final class LeafWait: @unchecked Sendable {
    private let service: String
    private let wanted: UInt64
    private let cache: LeafCache
    private let catalog: Catalog
    private let loop: any EventLoop
    private let pretty: Bool
    private let promise: EventLoopPromise<HTTPResponse>
    private let deadline: NIODeadline
    // Touched only on `loop`.
    private var token: WatchHub.Token?
    private var timer: Scheduled<Void>?
    private var done = false

    private init(service: String, wanted: UInt64, wait: TimeAmount, cache: LeafCache, catalog: Catalog, loop: any EventLoop, pretty: Bool) {
        self.service = service
        self.wanted = wanted
        self.cache = cache
        self.catalog = catalog
        self.loop = loop
        self.pretty = pretty
        self.deadline = .now() + wait
        self.promise = loop.makePromise()
    }

    static func run(service: String, wanted: UInt64, wait: TimeAmount, cache: LeafCache, catalog: Catalog, loop: any EventLoop,
                    cancellation: CancellationSignal, pretty: Bool) -> EventLoopFuture<HTTPResponse> {
        let query = LeafWait(service: service, wanted: wanted, wait: wait, cache: cache, catalog: catalog, loop: loop, pretty: pretty)
        loop.execute { query.evaluate() }
        cancellation.onCancel { loop.execute { query.finish(.text(.requestTimeout, "client went away")) } }
        return query.promise.futureResult
    }

    private func evaluate() {
        guard !done else { return }
        let entry: LeafCache.Entry
        do { entry = try cache.leaf(for: service, catalog: catalog) } catch { return finish(.text(.internalServerError, "\(error)")) }
        if wanted == 0 || entry.index != wanted || NIODeadline.now() >= deadline { return finish(response(entry)) }
        token.map(catalog.hub.cancel)
        token = catalog.hub.wait(on: WatchKey.connectCA, loop: loop) { self.evaluate() }
        timer?.cancel()
        let renewal = NIODeadline.now() + .nanoseconds(Int64(max(0, entry.renewAt.timeIntervalSinceNow) * 1e9))
        timer = loop.scheduleTask(deadline: min(deadline, renewal)) { self.evaluate() }
    }

    private func finish(_ response: HTTPResponse) {
        guard !done else { return }
        done = true
        token.map(catalog.hub.cancel)
        timer?.cancel()
        promise.succeed(response)
    }

    private func response(_ entry: LeafCache.Entry) -> HTTPResponse {
        let leaf = entry.leaf
        let format = Date.ISO8601FormatStyle()
        var response = HTTPResponse.json(JSON.object(JSONObject([
            ("SerialNumber", .string(leaf.serialNumber)), ("CertPEM", .string(leaf.certificatePEM)),
            ("PrivateKeyPEM", .string(leaf.privateKeyPEM)), ("Service", .string(leaf.service)),
            ("ServiceURI", .string(leaf.serviceURI)), ("ValidAfter", .string(format.format(leaf.validAfter))),
            ("ValidBefore", .string(format.format(leaf.validBefore))),
            ("CreateIndex", .unsigned(entry.createIndex)), ("ModifyIndex", .unsigned(entry.index)),
        ])).serialized(pretty: pretty))
        ConsulHeaders.addQueryMeta(&response.headers, index: entry.index)
        return response
    }
}
