import Crypto
import Foundation
import SwiftASN1
import TrellisCore
import X509

/// A CA setting or key that cannot be used, said as the person who gave it should read it.
struct CAError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A leaf certificate issued to a service, with its private key (Consul's `LeafCert`).
struct LeafCertificate: Sendable {
    let service: String
    let serviceURI: String
    /// Colon hex, as Consul reports serial numbers.
    let serialNumber: String
    let certificatePEM: String
    let privateKeyPEM: String
    let validAfter: Date
    let validBefore: Date
    /// The root that signed it.
    let rootID: String
}

/// Consul's built-in CA provider: ECDSA P-256 roots and the leaves they sign, with SPIFFE IDs.
enum CertificateAuthority {
    /// Leaves are dated back a minute so that peers whose clocks lag a little accept them (as Consul does).
    static let backdating: TimeInterval = 60

    /// A new self-signed root for `trustDomain`, signed by `key` (a fresh one by default).
    static func makeRoot(trustDomain: String, clusterID: String, validFor ttl: Duration, now: Date,
                         key: P256.Signing.PrivateKey = .init()) throws -> CARoot {
        let privateKey = Certificate.PrivateKey(key)
        let serial = randomSerial()
        let name = try DistinguishedName {
            CommonName("pri-\(hex(Array(serial.prefix(4)), separator: "")).consul.ca.\(clusterID.prefix(8)).consul")
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
            Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: privateKey.publicKey)
            SubjectAlternativeNames([.uniformResourceIdentifier("spiffe://\(trustDomain)")])
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(bytes: serial), publicKey: privateKey.publicKey,
            notValidBefore: now - backdating, notValidAfter: now + TimeInterval(ttl.components.seconds),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions, issuerPrivateKey: privateKey)
        return try root(certificate, key: key)
    }

    /// The root an operator supplies (`PrivateKey`, and `RootCert` or nil to have one made for the key).
    static func importRoot(keyPEM: String, certificatePEM: String?, trustDomain: String, clusterID: String,
                           validFor ttl: Duration, now: Date) throws(CAError) -> CARoot {
        let key: P256.Signing.PrivateKey
        do { key = try P256.Signing.PrivateKey(pemRepresentation: keyPEM) } catch {
            throw CAError("PrivateKey must be a PEM-encoded ECDSA P-256 key (PrivateKeyType \"ec\", PrivateKeyBits 256)")
        }
        guard let certificatePEM, !certificatePEM.isEmpty else {
            do { return try makeRoot(trustDomain: trustDomain, clusterID: clusterID, validFor: ttl, now: now, key: key) } catch {
                throw CAError("cannot create a root certificate for PrivateKey: \(error)")
            }
        }
        let certificate: Certificate
        do { certificate = try Certificate(pemEncoded: certificatePEM) } catch {
            throw CAError("RootCert must be a PEM-encoded certificate: \(error)")
        }
        guard certificate.publicKey == Certificate.PublicKey(key.publicKey) else {
            throw CAError("RootCert does not belong to PrivateKey")
        }
        guard case .isCertificateAuthority = try? certificate.extensions.basicConstraints else {
            throw CAError("RootCert is not a CA certificate (basic constraints CA:TRUE)")
        }
        guard certificate.notValidAfter > now else { throw CAError("RootCert expired at \(certificate.notValidAfter)") }
        do { return try root(certificate, key: key) } catch { throw CAError("cannot read RootCert: \(error)") }
    }

    /// Signs a leaf for `service` with `root`, valid for `ttl`, with a new key.
    static func signLeaf(service: String, trustDomain: String, datacenter: String, root: CARoot, validFor ttl: Duration,
                         now: Date) throws -> LeafCertificate {
        let rootCertificate = try Certificate(pemEncoded: root.certificatePEM)
        let rootKey = Certificate.PrivateKey(try P256.Signing.PrivateKey(pemRepresentation: root.privateKeyPEM))
        let leafKey = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(leafKey.publicKey)
        let uri = SPIFFEServiceID(trustDomain: trustDomain, datacenter: datacenter, service: service).uri
        let serial = randomSerial()
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true, keyEncipherment: true, keyAgreement: true))
            try ExtendedKeyUsage([.serverAuth, .clientAuth])
            SubjectKeyIdentifier(hash: publicKey)
            AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: rootCertificate.publicKey).keyIdentifier)
            SubjectAlternativeNames([.uniformResourceIdentifier(uri)])
        }
        let validAfter = now - backdating
        let validBefore = now + TimeInterval(ttl.components.seconds)
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(bytes: serial), publicKey: publicKey,
            notValidBefore: validAfter, notValidAfter: validBefore, issuer: rootCertificate.subject,
            subject: try DistinguishedName { CommonName(service) }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions, issuerPrivateKey: rootKey)
        return LeafCertificate(
            service: service, serviceURI: uri, serialNumber: hex(serial, separator: ":"),
            certificatePEM: try certificate.serializeAsPEM().pemString, privateKeyPEM: leafKey.pemRepresentation,
            validAfter: certificate.notValidBefore, validBefore: certificate.notValidAfter, rootID: root.id)
    }

    /// The record of a root certificate and its key.
    private static func root(_ certificate: Certificate, key: P256.Signing.PrivateKey) throws -> CARoot {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        var root = CARoot()
        root.id = hex(Array(Insecure.SHA1.hash(data: serializer.serializedBytes)), separator: ":")
        root.name = "Consul CA Primary Cert"
        root.serialNumber = certificate.serialNumber.bytes.suffix(8).reduce(0) { $0 << 8 | UInt64($1) }
        root.signingKeyID = hex(Array(SubjectKeyIdentifier(hash: certificate.publicKey).keyIdentifier), separator: ":")
        root.notBefore = Int(certificate.notValidBefore.timeIntervalSince1970)
        root.notAfter = Int(certificate.notValidAfter.timeIntervalSince1970)
        root.certificatePEM = try certificate.serializeAsPEM().pemString
        root.privateKeyPEM = key.pemRepresentation
        return root
    }

    /// Eight random bytes with the top bit clear: a positive serial number.
    private static func randomSerial() -> [UInt8] {
        var bytes = (0..<8).map { _ in UInt8.random(in: 0...255) }
        bytes[0] = bytes[0] & 0x7f | 0x01
        return bytes
    }

    static func hex(_ bytes: [UInt8], separator: String) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: separator)
    }
}
