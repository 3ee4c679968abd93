import Foundation
import GRDB
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// gc's sweep of one batch of packs, in three steps (docs/format.md §13):
/// 1. the live blobs of packs to rewrite are copied, verified, into new packs (sealed, not indexed yet);
/// 2. one transaction marks from trees touched since the mark (a commit in flight relies on them), moves the
///    copied blobs to their new packs, deletes each dead blob that is still unreachable and untouched since the
///    cutoff, and deletes the rows of old packs left empty — a pack still holding a blob touched meanwhile stays;
/// 3. only then are the old pack files deleted.
/// Killed after 1, the new packs are unindexed files (the gc after the grace removes them); killed after 2, the
/// old packs are unindexed files older than the cutoff (the next gc removes them).
struct GCSweeper {
    let store: Store
    let cutoff: Date
    /// Tests: stop after the index commit, before deleting the old files (a gc killed there).
    var stopBeforeDeletingFiles = false

    struct Outcome {
        var deletedBlobs = 0
        var keptTouched = 0
        var packsDeleted = 0
        var packsRepacked = 0
        var packsKept = 0
        var packsWritten = 0
        var bytesFreed: Int64 = 0
        var stopped = false
    }

    func sweep(_ batch: [GCPlan.PackWork], marker: inout LivenessMarker) throws -> Outcome {
        var outcome = Outcome()
        let written = try copyLive(batch)
        outcome.packsWritten = written.count
        let cut = cutoff.timeIntervalSince1970
        let emptied: [GCPlan.PackWork] = try store.index.write("recording garbage collection") { db in
            let late = try StoreIndex.youngTrees(db, since: cutoff).filter { !marker.hasExpanded($0) }
            if !late.isEmpty { try marker.mark(late, required: false, in: db) }
            for p in written {
                try db.execute(
                    sql: "INSERT INTO packs (name, size, blob_count, created_at) VALUES (?, ?, ?, ?)",
                    arguments: [p.name, p.size, p.entries.count, Date().timeIntervalSince1970])
                let packID = db.lastInsertedRowID
                let move = try db.cachedStatement(sql: "UPDATE blobs SET pack_id = ?, offset = ? WHERE id = ? AND pack_id = ?")
                for (e, from) in zip(p.entries, p.from) { try move.execute(arguments: [packID, e.offset, e.id.data, from]) }
            }
            let delete = try db.cachedStatement(sql: "DELETE FROM blobs WHERE id = ? AND pack_id = ? AND touched_at < ?")
            // The relay's records of which machine holds a dead blob go with it (machine_blobs comes with the
            // relay's migration, which every store the binary opens has; a test's store may lack it), unless the
            // vault holds the blob (vault_blobs, the forwarder's ledger): the machine still reads it from there
            // when it restores a point pruned from the relay; the vault's retention drops those records when the
            // vault lets the blob go. By machine, so that each delete is a look-up in the table's primary key.
            let vaulted = try db.tableExists("vault_blobs") ? " AND NOT EXISTS (SELECT 1 FROM vault_blobs v WHERE v.blob_id = ?1)" : ""
            let disown =
                try db.tableExists("machine_blobs")
                ? db.cachedStatement(sql: "DELETE FROM machine_blobs WHERE machine_id IN (SELECT id FROM machines) AND blob_id = ?1" + vaulted) : nil
            for w in batch {
                for id in w.dead {
                    if marker.live.contains(id) { outcome.keptTouched += 1; continue }
                    try delete.execute(arguments: [id.data, w.pack.id, cut])
                    if db.changesCount == 0 { outcome.keptTouched += 1; continue }
                    try disown?.execute(arguments: [id.data])
                    outcome.deletedBlobs += 1
                }
            }
            var emptied: [GCPlan.PackWork] = []
            for w in batch {
                let left = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM blobs WHERE pack_id = ?", arguments: [w.pack.id]) ?? 0
                if left > 0 { outcome.packsKept += 1; continue }
                try db.execute(sql: "DELETE FROM packs WHERE id = ?", arguments: [w.pack.id])
                emptied.append(w)
            }
            try db.execute(sql: "DELETE FROM forgotten_points WHERE forgotten_at < ?", arguments: [cut])
            if outcome.deletedBlobs > 0 { try db.execute(sql: "UPDATE gc_state SET generation = generation + 1 WHERE id = 1") }
            return emptied
        }
        if stopBeforeDeletingFiles { outcome.stopped = true; return outcome }
        for w in emptied {
            let path = store.layout.packPath(w.pack.name)
            store.readers.evict(path)
            unlink(path)
            outcome.bytesFreed += Int64(w.pack.size)
            if w.repack { outcome.packsRepacked += 1 } else { outcome.packsDeleted += 1 }
        }
        outcome.bytesFreed -= Int64(written.reduce(0) { $0 + $1.size })
        return outcome
    }

    /// A new pack of copied blobs, with the pack each came from.
    struct Copied {
        var name: String
        var size: Int
        var entries: [PackEntry]
        var from: [Int64]
    }

    /// Copies the blobs to keep of the packs to rewrite, as stored, each verified against its id first.
    private func copyLive(_ batch: [GCPlan.PackWork]) throws -> [Copied] {
        var out: [Copied] = []
        var writer: PackWriter?
        var from: [Int64] = []
        let decompressor = ZstdDecompressor()
        func seal() throws {
            guard let w = writer else { return }
            writer = nil
            if w.isEmpty { w.abandon(); return }
            let sealed = try w.seal()
            out.append(Copied(name: sealed.name, size: sealed.size, entries: sealed.entries, from: from))
            from = []
        }
        for work in batch where work.repack {
            let path = store.layout.packPath(work.pack.name)
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0 { throw StoreError.system(errno, "opening pack", path) }
            defer { close(fd) }
            for e in try store.index.entries(ofPack: work.pack.id) where work.keep.contains(e.id) {
                let stored = try FileIO.readExactly(fd, offset: e.offset, count: e.storedLength, path: path)
                do {
                    _ = try stored.withUnsafeBytes {
                        try PreparedBlob.open(
                            stored: $0, id: e.id, compression: e.compression, rawLength: e.rawLength,
                            decompressor: decompressor, what: "blob \(e.id.shortHex) in pack \(work.pack.name)")
                    }
                } catch {
                    throw StoreError(.corrupt, "\(error); gc stopped before deleting this pack — run `outpost check --read-data`")
                }
                if writer == nil { writer = try PackWriter(layout: store.layout) }
                try writer!.append(PreparedBlob(id: e.id, kind: e.kind, compression: e.compression, stored: stored, rawLength: e.rawLength))
                from.append(work.pack.id)
                if writer!.size >= store.config.packTargetSize { try seal() }
            }
        }
        try seal()
        return out
    }
}
