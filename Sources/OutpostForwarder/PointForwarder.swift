import Foundation
import Logging
import OutpostCore
import OutpostCrypto
import OutpostStore
import Synchronization

/// Forwarding: every recovery point not yet forwarded goes to the vault, as sealed packs of the blobs it needs
/// that the vault has not acknowledged, then its sealed `p/` entry. The ledger records each acknowledged pack's
/// blobs as it goes, so an interrupted run resumes without re-uploading what the vault acknowledged.
struct PointForwarder: Sendable {
    let forwarder: Forwarder
    /// Enters pack names: a repair uses a fresh one, so that its packs never take a damaged pack's name.
    let salt: String

    var store: Store { forwarder.store }
    var ledger: ForwardingLedger { forwarder.ledger }
    var sealer: ObjectSealer { forwarder.sealer }

    /// Vault failures that would fail every other point the same way: the run stops at the first.
    static let fatal: [OutpostError.Code] = [.unreachable, .credentials, .refused, .staging]

    func run() async throws -> Forwarder.Report {
        try forwarder.checkStaging()
        // Shared with other forwarding runs, never with the vault's retention (it deletes packs whose blobs a
        // run would otherwise skip as already sent).
        let lock = try await VaultLock.acquire(data: forwarder.data, exclusive: false)
        defer { withExtendedLifetime(lock) {} }
        if !forwarder.verifierPut.load(ordering: .relaxed) {
            // Put-if-absent: a container that has its verifier keeps it.
            _ = try await forwarder.vault.put(Registration.verifierObject, Array(forwarder.verifier.utf8))
            forwarder.verifierPut.store(true, ordering: .relaxed)
        }
        var report = Forwarder.Report()
        let pending = try ledger.entries().filter { $0.state != .forwarded && $0.state != .expired }
        report.backlog = pending.count
        var failed: [String] = []
        for entry in pending {
            guard let id = BlobID(hex: entry.point) else { continue }
            do {
                try ledger.set(id, .forwarding)
                let (blobs, bytes) = try await forward(point: id)
                try ledger.set(id, .forwarded, bytes: bytes)
                report.points += 1
                report.blobs += blobs
                report.bytes += bytes
                report.backlog -= 1
                forwarder.logger.info("recovery point forwarded", metadata: ["point": "\(id.shortHex)", "blobs": "\(blobs)", "bytes": "\(bytes)"])
            } catch let e as ForwarderError where Self.fatal.contains(e.code) {
                // The vault (or the way to it) is the problem: every other point would fail the same way.
                try? ledger.set(id, .failed, reason: e.message)
                throw e
            } catch {
                // This point's own problem (e.g. a damaged blob on the relay): record it and go on with the others.
                try? ledger.set(id, .failed, reason: "\(error)")
                failed.append("\(id.shortHex): \(error)")
                forwarder.logger.error("recovery point not forwarded", metadata: ["point": "\(id.shortHex)", "error": "\(error)"])
            }
        }
        if !failed.isEmpty {
            throw ForwarderError(
                .vault,
                "\(failed.count) recovery points could not be forwarded (the others were): \(failed.joined(separator: "; ")); see `outpost relay forwarding`"
            )
        }
        return report
    }

    /// Sends what one point needs and the vault lacks, then its entry. Returns (blobs, bytes sent).
    private func forward(point id: BlobID) async throws -> (Int, Int64) {
        let packs = try cutIntoPacks(try ledger.unsent(try blobsNeeded(by: id)))
        var sent = 0
        var bytes: Int64 = 0
        try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            var next = 0
            func launch() {
                guard next < packs.count else { return }
                let ids = packs[next]
                next += 1
                group.addTask { try await self.upload(pack: ids) }
            }
            for _ in 0..<forwarder.concurrency { launch() }
            while let (n, size) = try await group.next() {
                sent += n
                bytes += Int64(size)
                launch()
            }
        }
        // Last, the point's entry under p/: a point the vault lists is complete there.
        let name = forwarder.reader.pointKey(id.hex)
        let sealed = try sealer.seal(Array(id.hex.utf8), name: name, kind: VaultPack.Kind.point.rawValue)
        _ = try await forwarder.vault.put(name, sealed, throttle: forwarder.throttle)
        return (sent, bytes + Int64(sealed.count))
    }

    /// Every blob the point needs, trees first, then its own record blob (so a rebuilt relay gets the same id).
    private func blobsNeeded(by id: BlobID) throws -> [BlobID] {
        let info = try store.index.points().first { $0.id == id }
        guard let info, let root = info.point.root else { throw ForwarderError(.vault, "recovery point \(id.shortHex) vanished from the catalog") }
        var needed: [BlobID] = []
        var seen = Set<BlobID>()
        var stack = [root]
        while let t = stack.popLast() {
            guard seen.insert(t).inserted else { continue }
            needed.append(t)
            for n in try store.loadTree(t).nodes {
                if let s = n.subtree, n.type == .directory { stack.append(s) }
                for e in n.extents { if case .chunk(let c, _) = e, seen.insert(c).inserted { needed.append(c) } }
            }
        }
        if seen.insert(id).inserted { needed.append(id) }
        return needed
    }

    /// Cuts `todo` into packs greedily by stored size. The cut depends only on the list, so a run that resumes
    /// after some packs were acknowledged forms the others exactly as before and puts the same names: a pack
    /// whose acknowledgement was lost is not stored twice.
    private func cutIntoPacks(_ todo: [BlobID]) throws -> [[BlobID]] {
        var packs: [[BlobID]] = []
        var current: [BlobID] = []
        var size = 0
        for b in todo {
            guard let loc = try store.index.location(of: b) else {
                throw ForwarderError(.vault, "blob \(b.shortHex) is missing from the relay's store; run `outpost relay check`")
            }
            current.append(b)
            size += loc.storedLength
            if size >= Forwarder.packTarget || current.count >= Forwarder.maxBlobsPerPack {
                packs.append(current)
                current = []
                size = 0
            }
        }
        if !current.isEmpty { packs.append(current) }
        return packs
    }

    /// Loads, checks, seals and puts one pack; records where each blob landed. Returns (blobs, bytes sent).
    private func upload(pack ids: [BlobID]) async throws -> (Int, Int) {
        var blobs = try loadIntact(ids)
        let vault = forwarder.vault
        var key = VaultPack.key(for: ids, salt: salt, sealer: sealer)
        var (bytes, locations) = try VaultPack.build(key: key, blobs: blobs, sealer: sealer)
        if try await !vault.put(key, bytes, throttle: forwarder.throttle),
            try await !existingPackMatches(key, size: bytes.count, locations: locations)
        {
            // The vault holds another pack under this name (a damaged one a repair was replacing when it was
            // interrupted, or one cut from differently stored blobs): this one goes under a fresh name.
            forwarder.logger.warning("a different pack already has this name in the vault; sending under a new one", metadata: ["pack": "\(key)"])
            key = VaultPack.key(for: ids, salt: Hex.encode((0..<8).map { _ in UInt8.random(in: 0...255) }), sealer: sealer)
            (bytes, locations) = try VaultPack.build(key: key, blobs: blobs, sealer: sealer)
            _ = try await vault.put(key, bytes, throttle: forwarder.throttle)
        }
        blobs.removeAll()
        try ledger.markSent(locations, packSize: bytes.count)
        forwarder.sentBytes.add(Int64(bytes.count), ordering: .relaxed)
        return (ids.count, bytes.count)
    }

    /// The blobs as stored on the relay, each checked for damage since it arrived.
    private func loadIntact(_ ids: [BlobID]) throws -> [PreparedBlob] {
        var blobs: [PreparedBlob] = []
        blobs.reserveCapacity(ids.count)
        for id in ids {
            guard let blob = try store.loadStored(id) else {
                throw ForwarderError(.vault, "blob \(id.shortHex) is missing from the relay's store; run `outpost relay check`")
            }
            // Never ship damage off-site (the vault copy cannot be overwritten): the blob was re-hashed when it
            // reached the relay; here it is checked for damage since (zstd's content checksum, or SHA-256).
            do {
                try forwarder.decompressors.with { d in
                    try blob.stored.withUnsafeBytes {
                        try PreparedBlob.checkIntegrity(
                            stored: $0, id: id, compression: blob.compression, rawLength: blob.rawLength,
                            decompressor: d, what: "blob \(id.shortHex) on the relay")
                    }
                }
            } catch {
                throw ForwarderError(.tampered, "\(error); it was not forwarded — run `outpost relay check --read-data`")
            }
            blobs.append(blob)
        }
        return blobs
    }

    /// Whether the pack the vault already holds under `key` is the one just built: a put repeated after a lost
    /// acknowledgement. Its index must list the same blobs at the same places, and every entry must open and
    /// hash right (rare path: read whole).
    private func existingPackMatches(_ key: String, size: Int, locations: [(BlobID, VaultLocation)]) async throws -> Bool {
        guard let pack = try await forwarder.vault.get(key), pack.count == size else { return false }
        do {
            let index = try VaultPack.readIndex(pack: pack, key: key, sealer: sealer)
            guard index.count == locations.count, zip(index, locations).allSatisfy({ $0.id == $1.0 && $0.location == $1.1 }) else { return false }
            try forwarder.decompressors.with { d in
                for (id, loc) in locations {
                    guard let range = VaultPack.entryRange(loc, packSize: pack.count) else {
                        throw ForwarderError(.tampered, "vault pack \(key) is cut off")
                    }
                    _ = try VaultPack.openEntry(pack[range], key: key, id: id, kind: loc.kind, sealer: sealer, decompressor: d)
                }
            }
            return true
        } catch let e as ForwarderError where e.code == .tampered {
            return false
        }
    }
}
