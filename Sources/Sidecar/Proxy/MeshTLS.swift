import EventIO
import Foundation
import TrellisCore

/// How the inbound listener takes connections: only mesh peers over mutual TLS (`strict`), mutual
/// TLS and plaintext on the same port told apart by the first byte (`permissive`), or plaintext (`off`).
public enum MTLSMode: String, Sendable, CaseIterable {
    case off, permissive, strict

    /// Whether callers may reach this mode's listener over mutual TLS.
    public var acceptsTLS: Bool { self != .off }
}

/// The leaf certificate and roots the sidecar holds, as the registry issued them.
public struct MeshIdentity: Sendable, Equatable {
    public var certificatePEM: String
    public var privateKeyPEM: String
    public var rootsPEM: String
    /// The leaf's SPIFFE ID (`spiffe://<trust domain>/ns/default/dc/<dc>/svc/<service>`).
    public var serviceURI: String
    public var serialNumber: String
    public var validBefore: Date
    public var validAfter: Date
}

/// Who may call this service: the intentions whose destination is it or `*`, in the registry's
/// evaluation order, and what applies when none matches.
struct IntentionRules {
    var rules: [(source: String, allow: Bool)] = []
    var defaultAllow = true

    /// Whether `source` may call; the first rule naming it or `*` decides.
    func allows(_ source: String) -> Bool {
        rules.first { $0.source == source || $0.source == "*" }?.allow ?? defaultAllow
    }
}

/// The data plane's side of mutual TLS: server and client contexts made from the current identity
/// (new connections use the newest, open ones keep theirs), the caller identities it accepts, and
/// the intentions it applies. Confined to the reactor.
final class MeshTLS {
    let mode: MTLSMode
    private let metrics: SidecarMetrics
    private(set) var identity: MeshIdentity?
    /// Made when the identity is installed, for an inbound mode that takes mutual TLS.
    private(set) var server: TLSContext?
    private var builtClient: TLSContext?
    var intentions = IntentionRules()
    /// The sidecar's own SPIFFE ID: its trust domain and datacenter are every peer's.
    private var own: SPIFFEServiceID?

    init(mode: MTLSMode, metrics: SidecarMetrics) {
        self.mode = mode
        self.metrics = metrics
    }

    /// Made on first use: a sidecar that never calls an instance over mutual TLS never loads
    /// OpenSSL's state for it (a few MiB). Nil until there is an identity, or if OpenSSL refuses it.
    var client: TLSContext? {
        if builtClient == nil, let identity { builtClient = try? Self.context(server: false, identity) }
        return builtClient
    }

    /// Switches to `identity` for new connections; throws (keeping the current one) when OpenSSL refuses it.
    func install(_ identity: MeshIdentity) throws {
        guard let own = SPIFFEServiceID(identity.serviceURI) else {
            throw TLSError("the leaf's SPIFFE ID \(identity.serviceURI) names no service")
        }
        let server = mode.acceptsTLS ? try Self.context(server: true, identity) : nil
        (self.server, self.builtClient, self.identity) = (server, nil, identity)
        self.own = own
    }

    private static func context(server: Bool, _ identity: MeshIdentity) throws -> TLSContext {
        try TLSContext(server: server, certificatePEM: identity.certificatePEM, privateKeyPEM: identity.privateKeyPEM,
                       rootsPEM: identity.rootsPEM)
    }

    /// The SPIFFE ID an instance of `service` presents.
    func expectedURI(of service: String) -> String? { own?.sibling(service).uri }

    /// The service of a caller's verified SPIFFE ID; nil when it is not of this trust domain and datacenter.
    func callerService(_ uri: String) -> String? {
        guard let own, let caller = SPIFFEServiceID(uri), caller == own.sibling(caller.service) else { return nil }
        return caller.service
    }

    /// Starts TLS on an accepted inbound connection as the mode says; false when it must be closed
    /// (strict, and no identity yet).
    func secureInbound(_ socket: StreamSocket) -> Bool {
        guard mode.acceptsTLS else { return true }
        guard let server else { return mode == .permissive }
        do { try socket.startTLS(server, plaintextAllowed: mode == .permissive) } catch { return false }
        return true
    }

    func handshakeCompleted(direction: String, resumed: Bool) {
        metrics.tlsHandshake(direction: direction, resumed: resumed)
    }

    /// Counts a connection that TLS failed, by the kind of failure.
    func recordFailure(direction: String, _ failure: String) {
        metrics.tlsHandshakeFailure(direction: direction, reason: Self.failureKind(failure))
    }

    /// A short label for OpenSSL's account of a failure.
    static func failureKind(_ failure: String) -> String {
        let kinds: [(String, String)] = [
            ("certificate has expired", "expired_certificate"), ("not yet valid", "certificate_not_yet_valid"),
            ("subject issuer mismatch", "wrong_identity"), ("unable to get local issuer", "unknown_ca"),
            ("self-signed certificate", "unknown_ca"), ("peer did not return a certificate", "no_certificate"),
            ("http request", "plaintext"), ("wrong version number", "plaintext"), ("certificate verify failed", "verify_failed"),
        ]
        return kinds.first { failure.contains($0.0) }?.1 ?? "other"
    }

    /// Why a request on `socket` may not reach the service, nil when it may: a caller of another
    /// mesh, or one no intention lets call. Plaintext callers of a permissive listener are let through.
    func refusal(of socket: StreamSocket) -> (answer: LocalAnswer, source: String)? {
        guard socket.isTLS else { return nil }
        guard let uri = socket.peerIdentity, let source = callerService(uri) else {
            return (LocalAnswer(status: .forbidden, reason: "unknown_identity",
                                message: "the caller's certificate names no service of this mesh"), "unknown")
        }
        guard intentions.allows(source) else {
            return (LocalAnswer(status: .forbidden, reason: "intention_denied",
                                message: "an intention denies \(source) calling this service"), source)
        }
        return nil
    }
}
