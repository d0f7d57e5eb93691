import Crypto
import Foundation
import JWTKit
import Policy
import TrellisCore

/// A caller the gateway verified: a token's subject and grants, or an API key's name.
struct EdgeIdentity: Equatable {
    var id: String
    var roles: [String] = []
    var scopes: [String] = []
}

/// One verification key of a provider, made by jwt-kit when the policy or the JWKS was read.
struct VerificationKey: Sendable {
    var id: String?
    var algorithm: String
    var verifier: any JWTAlgorithm

    /// The keys of `provider`'s inline and file keys (its JWKS keys arrive separately).
    static func keys(of provider: JWTProvider) async throws -> [VerificationKey] {
        var out: [VerificationKey] = []
        for key in provider.keys {
            let collection = JWTKeyCollection()
            switch key {
            case .hmac(let algorithm, let secret):
                await collection.add(hmac: HMACKey(key: SymmetricKey(data: secret)), digestAlgorithm: digest(algorithm))
                out.append(VerificationKey(id: nil, algorithm: algorithm, verifier: try await collection.getKey()))
            case .publicKey(let algorithm, let pem):
                switch algorithm {
                case "ES256": await collection.add(ecdsa: try ES256PublicKey(pem: pem))
                case "ES384": await collection.add(ecdsa: try ES384PublicKey(pem: pem))
                case "ES512": await collection.add(ecdsa: try ES512PublicKey(pem: pem))
                default: await collection.add(rsa: try Insecure.RSA.PublicKey(pem: pem), digestAlgorithm: digest(algorithm))
                }
                out.append(VerificationKey(id: nil, algorithm: algorithm, verifier: try await collection.getKey()))
            }
        }
        return out
    }

    /// The keys of a JWKS document (RFC 7517); keys jwt-kit cannot use are left out.
    static func keys(ofJWKS json: String) async throws -> [VerificationKey] {
        let jwks = try JSONDecoder().decode(JWKS.self, from: Data(json.utf8))
        let collection = JWTKeyCollection()
        try await collection.add(jwks: jwks)
        var out: [VerificationKey] = []
        for jwk in jwks.keys {
            guard let kid = jwk.keyIdentifier, let algorithm = jwk.algorithm?.rawValue,
                  let verifier = try? await collection.getKey(for: kid, alg: algorithm) else { continue }
            out.append(VerificationKey(id: kid.string, algorithm: algorithm, verifier: verifier))
        }
        return out
    }

    private static func digest(_ algorithm: String) -> DigestAlgorithm {
        algorithm.hasSuffix("512") ? .sha512 : algorithm.hasSuffix("384") ? .sha384 : .sha256
    }
}

/// Verifies the bearer tokens of one provider: signature (with the key the header's `kid` and
/// `alg` name; never `alg: none`), `exp` and `nbf` within the allowed skew, `iss` and `aud`.
/// Verified tokens are remembered by their SHA-256 until they expire, so that a token in use
/// costs one digest per request instead of a signature check. Confined to the data-plane loop.
final class JWTVerifier {
    enum Failure: Error, Equatable {
        case malformed(String)
        case unknownKey
        case badSignature
        case expired
        case notYetValid
        case wrongIssuer
        case wrongAudience

        var description: String {
            switch self {
            case .malformed(let why): "malformed token: \(why)"
            case .unknownKey: "no key of this issuer verifies the token's kid and alg"
            case .badSignature: "signature verification failed"
            case .expired: "token expired"
            case .notYetValid: "token not valid yet (nbf)"
            case .wrongIssuer: "token issuer not accepted"
            case .wrongAudience: "token audience not accepted"
            }
        }
    }

    let provider: JWTProvider
    /// The provider's inline and file keys, and the last JWKS fetched.
    private(set) var keys: [VerificationKey]
    private var verified: [SHA256.Digest: (identity: EdgeIdentity, expires: Double)] = [:]
    /// Beyond this many remembered tokens, expired ones are dropped (then all, if still full).
    private let maxRemembered = 100_000
    private let rolesClaim: String

    init(provider: JWTProvider, keys: [VerificationKey], rolesClaim: String) {
        self.provider = provider
        self.keys = keys
        self.rolesClaim = rolesClaim
    }

    /// Replaces the keys (a JWKS was fetched); tokens verified before are checked again.
    func install(_ keys: [VerificationKey]) {
        self.keys = keys
        verified.removeAll(keepingCapacity: true)
    }

    func verify(_ token: Substring, now: Double) -> Result<EdgeIdentity, Failure> {
        var hasher = SHA256()
        var text = token
        text.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        let digest = hasher.finalize()
        if let known = verified[digest] {
            if known.expires > now - skew { return .success(known.identity) }
            verified[digest] = nil
        }
        let result = check(token, now: now)
        if case .success(let (identity, expires)) = result {
            if verified.count >= maxRemembered { forgetExpired(now: now) }
            verified[digest] = (identity, expires ?? .infinity)
            return .success(identity)
        }
        return result.map(\.0)
    }

    private var skew: Double { Double(provider.clockSkew.nanoseconds) / 1e9 }

    private func check(_ token: Substring, now: Double) -> Result<(EdgeIdentity, Double?), Failure> {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return .failure(.malformed("expected three dot-separated parts")) }
        guard let headerBytes = Self.base64URL(parts[0]), let header = try? JSON.parse(headerBytes),
              let payloadBytes = Self.base64URL(parts[1]), let payload = try? JSON.parse(payloadBytes),
              let signature = Self.base64URL(parts[2]) else {
            return .failure(.malformed("header, payload or signature is not base64url JSON"))
        }
        guard let algorithm = header["alg"]?.stringValue, algorithm != "none" else {
            return .failure(.malformed("alg must name a signature algorithm"))
        }
        let kid = header["kid"]?.stringValue
        let candidates = keys.filter { $0.algorithm == algorithm && (kid == nil || $0.id == nil || $0.id == kid) }
        guard !candidates.isEmpty else { return .failure(.unknownKey) }
        let signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        guard candidates.contains(where: { (try? $0.verifier.verify(signature, signs: signingInput)) == true }) else {
            return .failure(.badSignature)
        }
        let expires = Self.number(payload["exp"])
        if let expires, now > expires + skew { return .failure(.expired) }
        if let notBefore = Self.number(payload["nbf"]), now + skew < notBefore { return .failure(.notYetValid) }
        if let issuer = provider.issuer, payload["iss"]?.stringValue != issuer { return .failure(.wrongIssuer) }
        if !provider.audiences.isEmpty {
            let audiences = payload["aud"]?.stringValue.map { [$0] } ?? payload["aud"]?.arrayValue?.compactMap(\.stringValue) ?? []
            guard audiences.contains(where: provider.audiences.contains) else { return .failure(.wrongAudience) }
        }
        // Claims go into request headers: control characters (a CR LF would start a header of the
        // token's choosing) are dropped, and so are roles with a comma, the list separator.
        let identity = EdgeIdentity(id: Self.headerSafe(payload["sub"]?.stringValue ?? ""),
                                    roles: Self.strings(payload[rolesClaim]).map(Self.headerSafe).filter { !$0.contains(",") },
                                    scopes: Self.strings(payload["scope"]) + Self.strings(payload["scp"]))
        return .success((identity, expires))
    }

    static func headerSafe(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }))
    }

    private func forgetExpired(now: Double) {
        verified = verified.filter { $0.value.expires > now }
        if verified.count >= maxRemembered { verified.removeAll(keepingCapacity: true) }
    }

    /// A list of strings, or one string of space-separated words (OAuth's `scope`).
    private static func strings(_ value: JSON?) -> [String] {
        if let list = value?.arrayValue { return list.compactMap(\.stringValue) }
        return value?.stringValue?.split(separator: " ").map(String.init) ?? []
    }

    private static func number(_ value: JSON?) -> Double? {
        guard let value else { return nil }
        if let int = value.intValue { return Double(int) }
        if case .double(let double) = value { return double }
        return nil
    }

    /// RFC 4648 §5 without padding, as JWS compact serialization writes it.
    static func base64URL(_ text: Substring) -> [UInt8]? {
        guard text.utf8.allSatisfy({ $0 != UInt8(ascii: "+") && $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "=") }) else { return nil }
        var standard = String(text).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        standard += String(repeating: "=", count: (4 - standard.utf8.count % 4) % 4)
        return Base64.decode(standard)
    }
}
