import Foundation
import OutpostCore

/// What a gc means to do, pack by pack, from the marked blobs and the index as read once: packs with no blob
/// to keep go, packs with enough dead bytes are rewritten. A blob is kept when it is marked, or was stored or
/// relied on at or after the cutoff; packs made after the cutoff are left alone. The sweep checks each decision
/// again in its transaction (`GCSweeper`), so the index may change under the plan.
struct GCPlan {
    struct PackWork {
        var pack: PackRecord
        /// Blobs to copy into a new pack (repack only).
        var keep: Set<BlobID>
        /// Blobs to delete, if still unreachable and untouched at the sweep.
        var dead: [BlobID]
        var deadBytes: Int
        var repack: Bool
    }

    private(set) var work: [PackWork] = []
    private(set) var liveBlobs = 0
    private(set) var deadBlobs = 0
    /// Packs holding data no point needs that is younger than the grace (its blobs, or the pack itself).
    private(set) var packsInGrace = 0
    /// About what the sweep frees: whole packs, and the dead bytes of rewritten ones.
    private(set) var bytesToFree: Int64 = 0

    init(index: StoreIndex, live: Set<BlobID>, cutoff: Date, repackThreshold: Double) throws {
        let cut = cutoff.timeIntervalSince1970
        var byPack: [Int64: (live: [BlobID], dead: [BlobID], deadBytes: Int)] = [:]
        var unreachableYoung = Set<Int64>()
        for b in try index.allBlobs() {
            var entry = byPack[b.packID] ?? ([], [], 0)
            if live.contains(b.id) {
                entry.live.append(b.id)
            } else if b.touchedAt >= cut {
                entry.live.append(b.id)
                unreachableYoung.insert(b.packID)
            } else {
                entry.dead.append(b.id)
                entry.deadBytes += b.storedLength + PackFormat.blobHeaderSize + PackFormat.entrySize
            }
            byPack[b.packID] = entry
        }
        for pack in try index.packs() {
            let e = byPack[pack.id] ?? ([], [], 0)
            liveBlobs += e.live.count
            if pack.createdAt >= cutoff || unreachableYoung.contains(pack.id) {
                if !e.dead.isEmpty || unreachableYoung.contains(pack.id) { packsInGrace += 1 }
                if pack.createdAt >= cutoff { continue }
            }
            if e.live.isEmpty {
                work.append(PackWork(pack: pack, keep: [], dead: e.dead, deadBytes: e.deadBytes, repack: false))
                bytesToFree += Int64(pack.size)
            } else if !e.dead.isEmpty && Double(e.deadBytes) >= repackThreshold * Double(pack.size) {
                work.append(PackWork(pack: pack, keep: Set(e.live), dead: e.dead, deadBytes: e.deadBytes, repack: true))
                bytesToFree += Int64(e.deadBytes)
            } else {
                continue
            }
            deadBlobs += e.dead.count
        }
    }

    /// The work in batches, each swept in a transaction of its own: a writer waiting for the index waits for
    /// one batch, never for the whole gc (its busy timeout is 60 s).
    func batches(maxPacks: Int = 128, maxBlobs: Int = 100_000) -> [[PackWork]] {
        var out: [[PackWork]] = []
        var current: [PackWork] = []
        var blobs = 0
        for w in work {
            let n = w.dead.count + w.keep.count
            if !current.isEmpty && (current.count >= maxPacks || blobs + n > maxBlobs) {
                out.append(current)
                current = []
                blobs = 0
            }
            current.append(w)
            blobs += n
        }
        if !current.isEmpty { out.append(current) }
        return out
    }
}
