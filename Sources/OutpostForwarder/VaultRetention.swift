import Foundation
import Logging
import OutpostCore
import OutpostCrypto
import OutpostStore

/// The vault tier of the retention policy, applied in the vault (docs/vault.md §19): the `p/` entries of the
/// points it lets go are deleted, then every vault pack none of whose blobs a remaining point needs, and packs
/// mostly dead are rewritten with their live blobs. Deletions go through the vault's soft delete (kept in its
/// trash for its soft-delete period; an immutable vault refuses them, and nothing else is changed then).
///
/// Runs under the vault lock held exclusively, so no forwarding run skips a blob whose pack is being deleted.
/// Every step records what it did only after the vault confirmed it, and every step is repeated harmlessly: a
/// run killed anywhere is finished by the next (a pack put by an interrupted rewrite whose blobs were never
/// recorded stays in the vault, unlisted; space only).
public struct VaultRetention: Sendable {
    let forwarder: Forwarder
    /// A pack is rewritten when at least this share of its sealed bytes belongs to blobs no point needs.
    public var rewriteThreshold = 0.5

    public init(forwarder: Forwarder, rewriteThreshold: Double = 0.5) {
        self.forwarder = forwarder
        self.rewriteThreshold = rewriteThreshold
    }

    public struct Report: Sendable, Encodable {
        public var dryRun = false
        public var pointsExpired = 0
        public var packsDeleted = 0
        public var packsRewritten = 0
        /// Bytes the vault no longer holds for this relay (deleted packs, and what rewrites left out).
        public var bytesFreed: Int64 = 0
        /// Bytes of blobs no point needs, left in packs not worth rewriting.
        public var bytesLeft: Int64 = 0
        /// Bytes the ledger knows the vault holds for this relay, after the run.
        public var vaultBytes: Int64 = 0
        public var packs = 0
        /// Packs kept because a blob could not be read back for a rewrite, and similar notes.
        public var notes: [String] = []
    }

    /// `expiring`: the points the vault tier lets go. `vaultOnly`: the points pruned from the relay that stay in
    /// the vault. `forget`: drops expired vault-only points from the relay's list (`PrunedPoints.remove`).
    public func run(
        expiring: [BlobID], vaultOnly: [RecoveryPointInfo], dryRun: Bool, forget: @Sendable ([BlobID]) throws -> Void
    ) async throws -> Report {
        // A dry run changes nothing in the vault and needs no lock (its figures may be a forwarding run behind).
        let lock = dryRun ? nil : try await VaultLock.acquire(data: forwarder.data, exclusive: true)
        defer { withExtendedLifetime(lock) {} }
        var report = Report()
        report.dryRun = dryRun
        let store = forwarder.store, ledger = forwarder.ledger, vault = forwarder.vault
        let catalog = try store.index.points()
        let onRelay = Set(catalog.map(\.id))

        // 1. The expired points' entries: the vault no longer lists them.
        let gone = Set(expiring)
        if !dryRun {
            for id in expiring {
                do { try await vault.delete(forwarder.reader.pointKey(id.hex)) } catch let e as ForwarderError where e.code == .refused {
                    throw ForwarderError(
                        .refused,
                        "the vault refused to delete the entry of recovery point \(id.shortHex) (\(e.message)); an immutable vault keeps every point: nothing more was deleted there"
                    )
                }
                if onRelay.contains(id) { try ledger.set(id, .expired) }
            }
            try forget(expiring.filter { !onRelay.contains($0) })
        }
        report.pointsExpired = expiring.count

        // 2. What the remaining points need: every point on the relay but the expired ones (a forwarded point is
        // kept in the vault; one not forwarded yet will rely on the blobs the ledger places), and the vault-only
        // points that stay.
        let expired = try ledger.expiredPoints().union(gone)
        var roots: [(point: BlobID, root: BlobID)] = catalog.filter { !expired.contains($0.id) }.compactMap { p in
            p.point.root.map { (p.id, $0) }
        }
        roots += vaultOnly.filter { !gone.contains($0.id) }.compactMap { p in p.point.root.map { (p.id, $0) } }
        let live = try await liveBlobs(roots)

        // 3. Packs: deleted when nothing in them is live, rewritten when mostly dead.
        for pack in try ledger.packs() {
            report.packs += 1
            let size = Int64(pack.size ?? pack.estimatedSize)
            let dead = pack.blobs.filter { !live.contains($0.id) }
            if dead.isEmpty {
                report.vaultBytes += size
                continue
            }
            let deadBytes = Int64(dead.reduce(0) { $0 + $1.length })
            let totalBytes = max(1, Int64(pack.blobs.reduce(0) { $0 + $1.length }))
            if dead.count == pack.blobs.count {
                report.packsDeleted += 1
                report.bytesFreed += size
                if !dryRun {
                    try await deletePack(pack.key)
                    try ledger.forgetPack(pack.key)
                }
            } else if Double(deadBytes) >= rewriteThreshold * Double(totalBytes) {
                let kept = pack.blobs.filter { live.contains($0.id) }.map(\.id)
                if dryRun {
                    report.packsRewritten += 1
                    report.bytesFreed += deadBytes
                    report.vaultBytes += size - deadBytes
                    continue
                }
                do {
                    let newSize = try await rewrite(pack.key, keeping: kept)
                    report.packsRewritten += 1
                    report.bytesFreed += size - Int64(newSize)
                    report.vaultBytes += Int64(newSize)
                } catch let e as ForwarderError where e.code == .tampered || e.code == .notFound {
                    report.notes.append("pack \(pack.key) kept: \(e.message)")
                    report.bytesLeft += deadBytes
                    report.vaultBytes += size
                }
            } else {
                report.bytesLeft += deadBytes
                report.vaultBytes += size
            }
        }
        if !dryRun { try store.flush() }
        forwarder.logger.info(
            "vault retention",
            metadata: [
                "points_expired": "\(report.pointsExpired)", "packs_deleted": "\(report.packsDeleted)",
                "packs_rewritten": "\(report.packsRewritten)", "bytes_freed": "\(report.bytesFreed)", "dry_run": "\(dryRun)",
            ])
        return report
    }

    /// Every blob the points need: their record blobs, trees and chunks. A tree the relay no longer holds is read
    /// back from the vault (and kept on the relay); one that cannot be had stops the run before any pack is
    /// deleted: what it reaches is unknown.
    func liveBlobs(_ roots: [(point: BlobID, root: BlobID)]) async throws -> Set<BlobID> {
        var live = Set<BlobID>()
        var stack: [BlobID] = []
        for (point, root) in roots {
            live.insert(point)
            stack.append(root)
        }
        var expanded = Set<BlobID>()
        while let id = stack.popLast() {
            guard expanded.insert(id).inserted else { continue }
            live.insert(id)
            let tree = try await loadTree(id)
            for node in tree.nodes {
                if let sub = node.subtree, node.type == .directory { stack.append(sub) }
                for e in node.extents { if case .chunk(let c, _) = e { live.insert(c) } }
            }
        }
        return live
    }

    private func loadTree(_ id: BlobID) async throws -> Tree {
        let store = forwarder.store
        if let t = try? store.loadTree(id) { return t }
        guard let blob = try await forwarder.fetch(id) else {
            throw ForwarderError(
                .vault,
                "tree \(id.shortHex) of a recovery point the vault keeps is neither on the relay nor in the vault; no vault pack was deleted — run `outpost relay verify-vault`"
            )
        }
        let plain = try forwarder.decompressors.with { d in
            try blob.stored.withUnsafeBytes {
                try PreparedBlob.open(
                    stored: $0, id: id, compression: blob.compression, rawLength: blob.rawLength, decompressor: d, what: "tree \(id.shortHex)")
            }
        }
        try store.save([blob])
        return try Tree.decode(plain, id: id)
    }

    /// Soft-deletes a pack (already gone: fine).
    private func deletePack(_ key: String) async throws {
        do { try await forwarder.vault.delete(key) } catch let e as ForwarderError where e.code == .refused {
            throw ForwarderError(
                .refused,
                "the vault refused to delete pack \(key) (\(e.message)); an immutable vault keeps every pack: nothing more was deleted there")
        }
    }

    /// Puts the live blobs of a pack into a new one (read from the relay where it holds them intact, else from
    /// the vault), records them there, then deletes the old pack. Returns the new pack's size.
    private func rewrite(_ key: String, keeping ids: [BlobID]) async throws -> Int {
        var blobs: [PreparedBlob] = []
        for id in ids {
            if let b = try? forwarder.store.loadStored(id), intact(b) {
                blobs.append(b)
            } else if let b = try await forwarder.fetch(id) {
                blobs.append(b)
            } else {
                throw ForwarderError(.notFound, "blob \(id.shortHex) could not be read back to rewrite the pack")
            }
        }
        let salt = Hex.encode((0..<8).map { _ in UInt8.random(in: 0...255) })
        let newKey = VaultPack.key(for: ids, salt: salt, sealer: forwarder.sealer)
        let (bytes, locations) = try VaultPack.build(key: newKey, blobs: blobs, sealer: forwarder.sealer)
        _ = try await forwarder.vault.put(newKey, bytes, throttle: forwarder.throttle)
        try forwarder.ledger.markSent(locations, packSize: bytes.count)
        try await deletePack(key)
        try forwarder.ledger.forgetPack(key)
        return bytes.count
    }

    private func intact(_ b: PreparedBlob) -> Bool {
        (try? forwarder.decompressors.with { d in
            try b.stored.withUnsafeBytes {
                try PreparedBlob.checkIntegrity(
                    stored: $0, id: b.id, compression: b.compression, rawLength: b.rawLength, decompressor: d, what: "blob \(b.id.shortHex)")
            }
        }) != nil
    }
}
