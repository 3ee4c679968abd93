import Crypto
import Foundation
import NIOSSL
import OutpostCore
import SwiftASN1
import X509

/// A server's certificate and key (PEM), as made at `relay init` / `vault init` or given by the operator.
public struct TLSIdentity: Sendable {
    public var certificatePEM: String
    public var privateKeyPEM: String

    public init(certificatePEM: String, privateKeyPEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }

    /// A self-signed P-256 certificate, valid for ten years. Clients pin it by its SHA-256 fingerprint, so
    /// no CA is involved; names are informational.
    public static func selfSigned(commonName: String, hosts: [String], now: Date = Date()) throws -> TLSIdentity {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName(commonName) }
        let sans = hosts.map { GeneralName.dnsName($0) }
        let cert = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(10 * 365 * 86400),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                SubjectAlternativeNames(sans)
            },
            issuerPrivateKey: Certificate.PrivateKey(key)
        )
        return TLSIdentity(certificatePEM: try cert.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
    }

    public var fingerprint: String { get throws { try Self.fingerprint(ofPEM: certificatePEM) } }

    /// SHA-256 of the certificate's DER encoding, as 64 lowercase hex digits.
    public static func fingerprint(ofPEM pem: String) throws -> String {
        let der = try PEMDocument(pemString: pem).derBytes
        return Hex.encode(Array(SHA256.hash(data: der)))
    }

    /// Accepts "ab:cd:…", "AB CD …", "sha256:abcd…" and plain hex.
    public static func normalizeFingerprint(_ s: String) -> String {
        var t = s.lowercased()
        if t.hasPrefix("sha256:") { t.removeFirst(7) }
        return String(t.filter { $0.isHexDigit })
    }

    public func serverConfiguration() throws -> TLSConfiguration {
        let certs = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(bytes: Array(privateKeyPEM.utf8), format: .pem)
        var config = TLSConfiguration.makeServerConfiguration(certificateChain: certs, privateKey: .privateKey(key))
        config.minimumTLSVersion = .tlsv12
        return config
    }

    /// A client configuration that trusts exactly this certificate (pinning), whatever name the server uses.
    public static func pinnedClientConfiguration(certificatePEM: String) throws -> TLSConfiguration {
        var config = TLSConfiguration.makeClientConfiguration()
        config.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)))
        config.certificateVerification = .noHostnameVerification
        config.minimumTLSVersion = .tlsv12
        return config
    }

    /// Used only to fetch a server's certificate before pinning it (enrollment); the fingerprint is checked
    /// against what the operator gave, or shown for trust on first use.
    public static func unverifiedClientConfiguration() -> TLSConfiguration {
        var config = TLSConfiguration.makeClientConfiguration()
        config.certificateVerification = .none
        return config
    }
}
