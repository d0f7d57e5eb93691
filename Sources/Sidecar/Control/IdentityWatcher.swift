import ConsulClient
import Foundation
import Logging
import Synchronization
import TrellisCore
import TrellisHTTP

/// Keeps the sidecar's identity current: its leaf certificate (`/v1/agent/connect/ca/leaf/<service>`,
/// which the registry reissues at about half its life and when the root rotates) and the trusted
/// roots, each followed with a blocking query, and the intentions whose destination is the service.
/// A registry that cannot be reached leaves the current identity in force; the watch retries with
/// backoff, and every failure is logged and counted.
struct IdentityWatcher {
    let service: String
    let registry: ConsulClient
    let logger: Logger
    let metrics: SidecarMetrics
    /// Receives each new identity (leaf and roots together).
    let onIdentity: @Sendable (MeshIdentity) -> Void
    /// Receives the intentions toward the service; nil follows none (a gateway takes no mesh callers).
    let onIntentions: (@Sendable (IntentionRules) -> Void)?

    private final class Pending: Sendable {
        let parts = Mutex<(leaf: JSON?, roots: String?, installed: MeshIdentity?)>((nil, nil, nil))
    }

    func run() async {
        let pending = Pending()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await registry.watch("/v1/agent/connect/ca/leaf/\(URLPath.escape(service))", onError: failed) { response in
                    guard response.status == .ok else { return failed("leaf: HTTP \(response.status.code)") }
                    let leaf = try JSON.parse(response.bodyBytes)
                    // A leaf reissued for a new root comes with roots that include it: read them now, so
                    // that the new leaf is never installed with roots that do not trust it yet.
                    let roots = try await currentRoots()
                    publish(pending.parts.withLock {
                        $0.leaf = leaf
                        $0.roots = roots
                        return identity(from: $0)
                    }, pending)
                }
            }
            group.addTask {
                await registry.watch("/v1/agent/connect/ca/roots", onError: failed) { response in
                    guard response.status == .ok else { return failed("roots: HTTP \(response.status.code)") }
                    let roots = try Self.rootsPEM(response.bodyBytes)
                    publish(pending.parts.withLock {
                        $0.roots = roots
                        return identity(from: $0)
                    }, pending)
                }
            }
            if onIntentions != nil { group.addTask { await followIntentions() } }
        }
    }

    private func currentRoots() async throws -> String {
        let (status, _, body) = try await registry.send("GET", "/v1/agent/connect/ca/roots")
        guard status == 200 else { throw ConsulClient.Failure.answered(status: status, message: "roots") }
        return try Self.rootsPEM(body)
    }

    /// The PEM certificates of a `/v1/agent/connect/ca/roots` answer, one after the other.
    private static func rootsPEM(_ body: [UInt8]) throws -> String {
        (try JSON.parse(body)["Roots"]?.arrayValue ?? []).compactMap { $0["RootCert"]?.stringValue }.joined(separator: "\n")
    }

    private func failed(_ error: String) {
        metrics.leafRenewalFailures.increment()
        logger.warning("identity watch failed; keeping the current certificate", metadata: ["error": "\(error)"])
    }

    private func identity(from parts: (leaf: JSON?, roots: String?, installed: MeshIdentity?)) -> MeshIdentity? {
        guard let leaf = parts.leaf, let roots = parts.roots, !roots.isEmpty,
              let certificate = leaf["CertPEM"]?.stringValue, let key = leaf["PrivateKeyPEM"]?.stringValue,
              let uri = leaf["ServiceURI"]?.stringValue,
              let validBefore = (leaf["ValidBefore"]?.stringValue).flatMap({ try? Date.ISO8601FormatStyle().parse($0) }) else {
            return nil
        }
        return MeshIdentity(certificatePEM: certificate, privateKeyPEM: key, rootsPEM: roots, serviceURI: uri,
                            serialNumber: leaf["SerialNumber"]?.stringValue ?? "", validBefore: validBefore,
                            validAfter: (leaf["ValidAfter"]?.stringValue).flatMap { try? Date.ISO8601FormatStyle().parse($0) } ?? Date())
    }

    private func publish(_ identity: MeshIdentity?, _ pending: Pending) {
        guard let identity else { return }
        let isNew = pending.parts.withLock { parts in
            guard parts.installed != identity else { return false }
            parts.installed = identity
            return true
        }
        guard isNew else { return }
        metrics.leafExpiry.record(identity.validBefore.timeIntervalSince1970)
        metrics.leafLifetime.record(identity.validBefore.timeIntervalSince(identity.validAfter))
        logger.info("certificate installed", metadata: ["serial": "\(identity.serialNumber)",
                                                        "expires": "\(Date.ISO8601FormatStyle().format(identity.validBefore))"])
        onIdentity(identity)
    }

    /// Follows `/v1/connect/intentions/match?by=destination&name=<service>`, with the registry's
    /// default for callers no intention names (`DebugConfig.DefaultIntentionPolicy`, else the ACL
    /// default policy when ACLs are enabled, as Consul decides it).
    private func followIntentions() async {
        let path = "/v1/connect/intentions/match?by=destination&name=\(URLPath.escapeQueryValue(service))"
        await registry.watch(path, onError: { logger.warning("intentions watch: \($0)") }) { response in
            guard response.status == .ok else { return }
            let matched = try JSON.parse(response.bodyBytes)[service]?.arrayValue ?? []
            var rules = IntentionRules()
            rules.rules = matched.compactMap { intention in
                guard let source = intention["SourceName"]?.stringValue, let action = intention["Action"]?.stringValue else { return nil }
                return (source, action == "allow")
            }
            let agent = try? await registry.send("GET", "/v1/agent/self")
            let debug = agent.flatMap { try? JSON.parse($0.body) }?["DebugConfig"]
            switch debug?["DefaultIntentionPolicy"]?.stringValue ?? "" {
            case "": rules.defaultAllow = debug?["ACLsEnabled"]?.boolValue != true
                || debug?["ACLResolverSettings"]?["ACLDefaultPolicy"]?.stringValue != "deny"
            case let policy: rules.defaultAllow = policy != "deny"
            }
            onIntentions?(rules)
        }
    }
}
