import Foundation
import Logging
import OutpostCore
import OutpostCrypto
import OutpostHTTP
import OutpostStore

/// Reads what the relay sent back out of its vault container: one blob at the place a pack index or the ledger
/// names, a blob of vault objects version 1, the catalog of every pack's index, the recovery points held.
/// Everything read is authenticated and checked against its id before it is returned.
struct VaultReader: Sendable {
    let vault: VaultClient
    let sealer: ObjectSealer
    let logger: Logger

    /// The object key of a blob stored by vault objects version 1 (one object per blob under `c/`).
    static func legacyKey(_ name: String) -> String { "c/" + name.prefix(2) + "/" + name }

    /// The blob at `loc` (one range request), opened and checked; nil when the vault no longer has the pack.
    static func blob(_ id: BlobID, at loc: VaultLocation, vault: VaultClient, sealer: ObjectSealer) async throws -> PreparedBlob? {
        guard let range = VaultPack.entryRange(loc) else {
            throw ForwarderError(
                .tampered,
                "the relay's record of where blob \(id.shortHex) lies in vault pack \(loc.pack) is damaged (offset \(loc.offset), length \(loc.length)); run `outpost relay verify-vault --repair`"
            )
        }
        guard let sealed = try await vault.get(loc.pack, range: range) else { return nil }
        return try VaultPack.openEntry(sealed, key: loc.pack, id: id, kind: loc.kind, sealer: sealer, decompressor: ZstdDecompressor())
    }

    func blob(_ id: BlobID, at loc: VaultLocation) async throws -> PreparedBlob? {
        try await Self.blob(id, at: loc, vault: vault, sealer: sealer)
    }

    /// A blob stored by vault objects version 1; nil when the vault has no such object.
    func legacyBlob(_ id: BlobID) async throws -> PreparedBlob? {
        let name = Self.legacyKey(sealer.objectName(for: id))
        guard let sealed = try await vault.get(name) else { return nil }
        let (kind, plain) = try sealer.open(sealed, name: name)
        var r = BinaryReader(plain, what: "vault object \(name)")
        guard let comp = BlobCompression(rawValue: try r.u8()) else {
            throw ForwarderError(.tampered, "vault object \(name) names an unknown compression")
        }
        let raw = Int(try r.u32())
        let stored = try r.raw(r.remaining)
        let blob = PreparedBlob(id: id, kind: VaultPack.blobKind(kind) ?? .data, compression: comp, stored: stored, rawLength: raw)
        _ = try stored.withUnsafeBytes {
            try PreparedBlob.open(
                stored: $0, id: id, compression: comp, rawLength: raw, decompressor: ZstdDecompressor(), what: "vault object \(name)")
        }
        return blob
    }

    /// Where the vault holds each blob, read from the indexes of every pack in the container (a rebuilt relay
    /// has no ledger). A blob can be in several packs (a repair sent it again): every copy is listed.
    func catalog() async throws -> [BlobID: [VaultLocation]] {
        var out: [BlobID: [VaultLocation]] = [:]
        for entry in try await vault.list(prefix: "k/") {
            let size = entry.size
            guard size > 12, let trailer = try await vault.get(entry.key, range: (size - 8)..<size) else { continue }
            do {
                let range = try VaultPack.indexRange(trailer: trailer, packSize: size, key: entry.key)
                guard let sealed = try await vault.get(entry.key, range: range) else { continue }
                for e in try VaultPack.readIndex(sealed: sealed, key: entry.key, packSize: size, sealer: sealer) {
                    out[e.id, default: []].append(e.location)
                }
            } catch let e as ForwarderError where e.code == .tampered {
                // A damaged pack (a repair sent its blobs again elsewhere): what is needed and only there is
                // reported by name when the point that needs it is rebuilt.
                logger.warning("vault pack skipped", metadata: ["pack": "\(entry.key)", "error": "\(e.message)"])
            }
        }
        return out
    }

    /// The recovery point ids the vault holds (from the `p/` entries).
    func points() async throws -> [BlobID] {
        var out: [BlobID] = []
        for entry in try await vault.list(prefix: "p/") {
            guard let sealed = try await vault.get(entry.key) else { continue }
            let (_, plain) = try sealer.open(sealed, name: entry.key)
            if let id = BlobID(hex: String(decoding: plain, as: UTF8.self)) { out.append(id) }
        }
        return out
    }

    /// The object key of a recovery point's entry under `p/`.
    func pointKey(_ point: String) -> String { "p/" + sealer.objectName(label: "point:" + point) }
}
