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

    /// SHA-256 of the certificate's DER encoding, as 64 lowercase hex digits. The PEM must hold exactly one
    /// certificate (see `singleCertificateDER`).
    public static func fingerprint(ofPEM pem: String) throws -> String {
        fingerprint(ofDER: try singleCertificateDER(fromPEM: pem))
    }

    public static func fingerprint(ofDER der: [UInt8]) -> String {
        Hex.encode(Array(SHA256.hash(data: der)))
    }

    /// A pinned certificate as stored in client.toml or a credentials file: exactly one certificate, re-encoded.
    public static func pem(ofDER der: [UInt8]) throws -> String {
        _ = try Certificate(derEncoded: der)
        return PEMDocument(type: "CERTIFICATE", derBytes: der).pemString
    }

    /// The DER of the one certificate a pinned PEM holds. Anything else — a second certificate, a stray
    /// `-----BEGIN` line, text that is not a certificate — is refused: the fingerprint and the trust roots must
    /// be computed over the same single certificate, or an attacker's certificate could ride along.
    public static func singleCertificateDER(fromPEM pem: String) throws -> [UInt8] {
        let begins = pem.components(separatedBy: "-----BEGIN").count - 1
        guard begins == 1 else {
            throw PinError(description: "a pinned certificate must be exactly one PEM certificate, this text has \(begins) BEGIN lines")
        }
        let doc: PEMDocument
        do { doc = try PEMDocument(pemString: pem.trimmingCharacters(in: .whitespacesAndNewlines)) } catch {
            throw PinError(description: "the pinned certificate is not valid PEM (\(error))")
        }
        guard doc.discriminator == "CERTIFICATE" else {
            throw PinError(description: "the pinned PEM holds a \(doc.discriminator), not a CERTIFICATE")
        }
        return doc.derBytes
    }

    public struct PinError: Error, CustomStringConvertible, Sendable {
        public let description: String
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
        let der = try singleCertificateDER(fromPEM: certificatePEM)
        config.trustRoots = .certificates([try NIOSSLCertificate(bytes: der, format: .der)])
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
