import Foundation
import OutpostCore

/// What a relay needs to register with a vault once (MARS: the vault credentials file). Expires.
public struct VaultCredentialsFile: Codable, Sendable, Equatable {
    public var format = "outpost-vault-credentials"
    public var version = 1
    public var vaultID: String
    public var vaultName: String
    public var url: String
    /// SHA-256 of the vault certificate's DER; the certificate itself, for pinning.
    public var fingerprint: String
    public var certificate: String
    /// One-time registration secret.
    public var secret: String
    public var expiresAt: Date
    /// Set when the file re-attaches an existing relay's container (rebuilding a lost relay).
    public var recoverRelay: String?

    public init(
        vaultID: String, vaultName: String, url: String, fingerprint: String, certificate: String, secret: String, expiresAt: Date,
        recoverRelay: String?
    ) {
        self.vaultID = vaultID; self.vaultName = vaultName; self.url = url; self.fingerprint = fingerprint
        self.certificate = certificate; self.secret = secret; self.expiresAt = expiresAt; self.recoverRelay = recoverRelay
    }

    public func encoded() -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.dateEncodingStrategy = .iso8601
        return Array(try! e.encode(self))
    }

    public static func decode(_ bytes: [UInt8], path: String) throws -> VaultCredentialsFile {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        guard let f = try? d.decode(VaultCredentialsFile.self, from: Data(bytes)), f.format == "outpost-vault-credentials" else {
            throw FormatError(.invalidValue, "\(path) is not a vault credentials file; download one with `outpost vault credentials` on the vault")
        }
        guard f.version <= 1 else { throw FormatError(.unsupportedVersion, "\(path) has version \(f.version): upgrade outpost") }
        return f
    }
}

/// JSON bodies of the vault's HTTP API, version 1 (docs/vault.md).
public enum VaultAPI {
    public struct RegisterRequest: Codable, Sendable {
        public var secret: String
        public var relayName: String
        /// With a recovery credentials file: proof that the rebuilding relay holds the container's master key
        /// (`MasterKey.containerProof`, hex). Required when the container holds a `verifier` object.
        public var proof: String?
        public init(secret: String, relayName: String, proof: String? = nil) {
            self.secret = secret; self.relayName = relayName; self.proof = proof
        }
    }

    public struct RegisterResponse: Codable, Sendable {
        public var relayID: String
        /// `vault1:<relayID>:<secret>`, sent as `Authorization: Bearer …`.
        public var credential: String
        public init(relayID: String, credential: String) { self.relayID = relayID; self.credential = credential }
    }

    public struct ObjectEntry: Codable, Sendable, Equatable {
        public var key: String
        public var size: Int
        public init(key: String, size: Int) { self.key = key; self.size = size }
    }

    /// The body of `POST /v1/recovery-key`.
    public struct RecoveryKeyRequest: Codable, Sendable {
        public var secret: String
        public init(secret: String) { self.secret = secret }
    }

    public static func credential(relayID: String, secret: String) -> String { CredentialText.make("vault1", relayID, secret) }

    /// Splits `vault1:<relayID>:<secret>`.
    public static func parseCredential(_ s: String) -> (relayID: String, secret: String)? {
        CredentialText.parse(s, scheme: "vault1").map { (relayID: $0.owner, secret: $0.secret) }
    }

    /// The vault's JSON is Foundation's default (no sorted keys, no date strategy: its bodies hold no dates).
    public static func encoder() -> JSONEncoder { JSONEncoder() }
    public static func decoder() -> JSONDecoder { JSONDecoder() }
}
