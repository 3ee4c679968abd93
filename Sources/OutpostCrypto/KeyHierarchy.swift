import Crypto
import CryptoExtras
import Foundation
import OutpostCore

/// The crypto layer's name for its errors; a wrong passphrase is its own code, never reported as damaged data (one type for every layer: `OutpostError`).
public typealias CryptoError = OutpostError

/// MARS's rule: at least 16 characters, printable ASCII.
public enum PassphrasePolicy {
    public static let minimumLength = 16

    public static func check(_ passphrase: String) throws {
        let bytes = Array(passphrase.utf8)
        guard bytes.count >= minimumLength else {
            throw CryptoError(
                .weakPassphrase,
                "the passphrase has \(bytes.count) characters; it needs at least \(minimumLength) printable ASCII characters (letters, digits, punctuation, spaces)"
            )
        }
        guard bytes.allSatisfy({ $0 >= 0x20 && $0 <= 0x7e }) else {
            throw CryptoError(
                .weakPassphrase,
                "the passphrase must be printable ASCII only (no tabs, line breaks or accented letters), at least \(minimumLength) characters")
        }
    }

    /// A strong random passphrase: 32 characters from a 64-symbol alphabet (192 bits).
    public static func generate() -> String {
        let alphabet = Array("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.+=#")
        var g = SystemRandomNumberGenerator()
        return String((0..<32).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &g)] })
    }
}

/// scrypt cost parameters; recorded in the key file so that they can be raised later without breaking old files.
public struct ScryptParameters: Codable, Sendable, Equatable {
    public var n: Int
    public var r: Int
    public var p: Int

    /// ~125 ms in a release build on the reference machine.
    public static let standard = ScryptParameters(n: 1 << 15, r: 8, p: 1)
    /// For tests only (a debug build runs BoringSSL unoptimised).
    public static let fastForTests = ScryptParameters(n: 1 << 10, r: 8, p: 1)

    /// The bounds a key file's parameters must keep, checked before the KDF runs: a key file is read from the
    /// vault, and a damaged or hostile one must not make the relay allocate gigabytes or spin for hours
    /// (issue 8). N is a power of two from `fastForTests` up to 2^22, r 1…32, p 1…16, at most `maxMemory` of
    /// scratch space (BoringSSL's count: 128·r·(N + p + 1) bytes) and `maxWork` Salsa20/8 block mixes (N·r·p,
    /// 128 times `standard`).
    public static let nRange = (1 << 10)...(1 << 22)
    public static let rRange = 1...32
    public static let pRange = 1...16
    public static let maxMemory = 256 << 20
    public static let maxWork = 1 << 25

    /// Throws a clear error naming `source` (the key file) when a parameter is out of bounds.
    public func validate(source: String) throws {
        let inBounds =
            Self.nRange.contains(n) && n.nonzeroBitCount == 1 && Self.rRange.contains(r) && Self.pRange.contains(p)
            && 128 * r * (n + p + 1) <= Self.maxMemory && n * r * p <= Self.maxWork
        guard inBounds else {
            throw CryptoError(
                .malformed,
                "\(source) asks for scrypt parameters N=\(n), r=\(r), p=\(p), outside what Outpost accepts (N a power of two from 2^10 to 2^22, r 1 to 32, p 1 to 16, at most \(Self.maxMemory >> 20) MiB of memory): the key file is damaged or was not written by Outpost; restore it from a copy"
            )
        }
    }
}

/// The master key, wrapped by a key derived from the passphrase. Stored in the vault and on the relay; useless
/// without the passphrase. Version 1 (docs/vault.md).
public struct KeyFile: Codable, Sendable, Equatable {
    public static let currentVersion = 1
    public var version = KeyFile.currentVersion
    public var kdf = "scrypt"
    public var scrypt: ScryptParameters
    /// Base64 of 32 random bytes.
    public var salt: String
    /// Base64 of AES-GCM combined (nonce, ciphertext, tag) of the 32-byte master key.
    public var wrappedKey: String
    public var createdAt: Date

    /// Makes a new random master key wrapped under `passphrase`.
    public static func create(passphrase: String, parameters: ScryptParameters = .standard, now: Date = Date()) throws -> (KeyFile, MasterKey) {
        try PassphrasePolicy.check(passphrase)
        let master = MasterKey(SymmetricKey(size: .bits256))
        let file = try wrap(master, passphrase: passphrase, parameters: parameters, now: now)
        return (file, master)
    }

    static func wrap(_ master: MasterKey, passphrase: String, parameters: ScryptParameters, now: Date) throws -> KeyFile {
        var salt = [UInt8](repeating: 0, count: 32)
        var g = SystemRandomNumberGenerator()
        for i in salt.indices { salt[i] = UInt8.random(in: 0...255, using: &g) }
        let kek = try deriveKEK(passphrase: passphrase, salt: salt, parameters: parameters)
        let sealed = try master.key.withUnsafeBytes { try AES.GCM.seal(Array($0), using: kek, authenticating: Array("outpost-master-key-v1".utf8)) }
        return KeyFile(scrypt: parameters, salt: Data(salt).base64EncodedString(), wrappedKey: sealed.combined!.base64EncodedString(), createdAt: now)
    }

    /// Re-wraps the same master key under a new passphrase: nothing encrypted with it changes.
    public func rewrapped(oldPassphrase: String, newPassphrase: String, source: String = "the key file", now: Date = Date()) throws -> KeyFile {
        try PassphrasePolicy.check(newPassphrase)
        let master = try unwrap(passphrase: oldPassphrase, source: source)
        return try Self.wrap(master, passphrase: newPassphrase, parameters: scrypt, now: now)
    }

    /// `source` names the key file in errors (a path, or the vault object it came from).
    public func unwrap(passphrase: String, source: String = "the key file") throws -> MasterKey {
        guard version <= Self.currentVersion else {
            throw CryptoError(
                .unsupportedVersion, "the key file has version \(version); this outpost reads up to \(Self.currentVersion): upgrade outpost")
        }
        guard let salt = Data(base64Encoded: self.salt), let wrapped = Data(base64Encoded: wrappedKey), kdf == "scrypt" else {
            throw CryptoError(.malformed, "\(source) is malformed (salt, wrapped key or kdf)")
        }
        try scrypt.validate(source: source)
        let kek = try Self.deriveKEK(passphrase: passphrase, salt: Array(salt), parameters: scrypt)
        do {
            let box = try AES.GCM.SealedBox(combined: wrapped)
            let raw = try AES.GCM.open(box, using: kek, authenticating: Array("outpost-master-key-v1".utf8))
            guard raw.count == 32 else { throw CryptoError(.malformed, "the wrapped master key has \(raw.count) bytes, not 32") }
            return MasterKey(SymmetricKey(data: raw))
        } catch let e as CryptoError {
            throw e
        } catch {
            throw CryptoError(
                .wrongPassphrase,
                "the passphrase is wrong: it does not unlock the master key (if it was changed, use the new one; a lost passphrase cannot be recovered)"
            )
        }
    }

    static func deriveKEK(passphrase: String, salt: [UInt8], parameters p: ScryptParameters) throws -> SymmetricKey {
        try p.validate(source: "the key file")
        return try KDF.Scrypt.deriveKey(
            from: Array(passphrase.utf8), salt: salt, outputByteCount: 32,
            rounds: p.n, blockSize: p.r, parallelism: p.p, maxMemory: ScryptParameters.maxMemory)
    }

    public func encoded() -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.dateEncodingStrategy = .iso8601
        return Array(try! e.encode(self))
    }

    /// Decodes a key file and checks its scrypt parameters; `source` names it in errors.
    public static func decode(_ bytes: [UInt8], source: String = "the key file") throws -> KeyFile {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        let file: KeyFile
        do { file = try d.decode(KeyFile.self, from: Data(bytes)) } catch {
            throw CryptoError(.malformed, "\(source) is not a valid key file: \(error)")
        }
        try file.scrypt.validate(source: source)
        return file
    }
}

/// The 256-bit master key. Everything the vault stores is derived from it; it never leaves the relay unwrapped.
public struct MasterKey: Sendable {
    let key: SymmetricKey
    init(_ key: SymmetricKey) { self.key = key }

    /// Hex of the raw key, for the relay's 0600 key file.
    public func exported() -> String { key.withUnsafeBytes { Hex.encode(Array($0)) } }

    public init?(exported: String) {
        guard let bytes = Hex.decode(exported.trimmingCharacters(in: .whitespacesAndNewlines)), bytes.count == 32 else { return nil }
        key = SymmetricKey(data: bytes)
    }

    /// AES-256-GCM key for object contents (HKDF-SHA256, info "outpost data v1").
    public var dataKey: SymmetricKey { derive("outpost data v1") }
    /// HMAC-SHA256 key for object names (info "outpost names v1").
    public var nameKey: SymmetricKey { derive("outpost names v1") }

    /// Proof that whoever presents it holds this master key (docs/vault.md §6.2): HMAC-SHA256 under the key
    /// derived with info "outpost verifier v1" of the label `container-verifier`, in hex. The vault keeps only
    /// its SHA-256 (the object `verifier` of the container) and asks for it before it hands the container to a
    /// rebuilding relay.
    public func containerProof() -> String {
        Hex.encode(Array(HMAC<SHA256>.authenticationCode(for: Array("container-verifier".utf8), using: derive("outpost verifier v1"))))
    }

    /// What the vault keeps of `containerProof()`: its SHA-256 in hex.
    public static func verifierHash(ofProof proof: String) -> String {
        Hex.encode(Array(SHA256.hash(data: Array(proof.utf8))))
    }

    private func derive(_ info: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: key, salt: Array("outpost-vault".utf8), info: Array(info.utf8), outputByteCount: 32)
    }
}
