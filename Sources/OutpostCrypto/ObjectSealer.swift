import Crypto
import Foundation
import OutpostCore

/// Encrypts and authenticates what the relay sends to the vault, and names it without revealing chunk ids.
///
/// Sealed object, version 1: "OPV1" | u8 kind | AES-256-GCM nonce (12) | ciphertext | tag (16), with the
/// object's name and kind as associated data, so that an object moved under another name fails to open.
public struct ObjectSealer: Sendable {
    public static let magic: [UInt8] = Array("OPV1".utf8)
    let dataKey: SymmetricKey
    let nameKey: SymmetricKey

    public init(master: MasterKey) {
        dataKey = master.dataKey
        nameKey = master.nameKey
    }

    /// The name the vault sees for a chunk: HMAC-SHA256(name key, chunk id), hex. The vault cannot tell
    /// whether it holds a known file's chunk.
    public func objectName(for id: BlobID) -> String {
        let mac = id.withUnsafeBytes { HMAC<SHA256>.authenticationCode(for: $0, using: nameKey) }
        return Hex.encode(Array(mac))
    }

    /// A keyed name for any label (recovery points, manifests).
    public func objectName(label: String) -> String {
        Hex.encode(Array(HMAC<SHA256>.authenticationCode(for: Array(label.utf8), using: nameKey)))
    }

    public func seal(_ plaintext: [UInt8], name: String, kind: UInt8) throws -> [UInt8] {
        let box = try AES.GCM.seal(plaintext, using: dataKey, authenticating: aad(name, kind))
        return Self.magic + [kind] + Array(box.combined!)
    }

    public func open(_ sealed: [UInt8], name: String) throws -> (kind: UInt8, plaintext: [UInt8]) {
        guard sealed.count >= 5 + 12 + 16, Array(sealed[0..<4]) == Self.magic else {
            throw CryptoError(.tampered, "vault object \(name) is not a sealed Outpost object (bad header or too short): damaged or tampered with")
        }
        let kind = sealed[4]
        do {
            let box = try AES.GCM.SealedBox(combined: sealed[5...])
            return (kind, Array(try AES.GCM.open(box, using: dataKey, authenticating: aad(name, kind))))
        } catch {
            throw CryptoError(.tampered, "vault object \(name) fails authentication: it was damaged or tampered with in the vault")
        }
    }

    /// Seals without the visible header: nonce | ciphertext | tag only, the kind bound through the associated
    /// data. Used for the entries inside a vault pack, so that nothing in a pack marks where one entry ends and
    /// the next begins (only the sealed index knows).
    public func sealBare(_ plaintext: [UInt8], name: String, kind: UInt8) throws -> [UInt8] {
        Array(try AES.GCM.seal(plaintext, using: dataKey, authenticating: aad(name, kind)).combined!)
    }

    public func openBare(_ sealed: [UInt8], name: String, kind: UInt8) throws -> [UInt8] {
        do {
            let box = try AES.GCM.SealedBox(combined: sealed)
            return Array(try AES.GCM.open(box, using: dataKey, authenticating: aad(name, kind)))
        } catch {
            throw CryptoError(.tampered, "vault object \(name) fails authentication: it was damaged or tampered with in the vault")
        }
    }

    private func aad(_ name: String, _ kind: UInt8) -> [UInt8] { Array("outpost-object-v1:\(kind):\(name)".utf8) }
}
