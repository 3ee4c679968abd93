import Foundation
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// Files no index row names: sealed packs a killed writer never indexed, old packs a killed gc had dropped from
/// the index, new packs a killed gc never indexed, and `tmp/` files of killed writers. Beside a running writer
/// such a file may also be a pack being sealed (renamed, index transaction pending) or being written, so a file
/// goes only when it was last written before the cutoff, and a `tmp/` file only if no writer holds its flock.
struct LeftoverFiles {
    let store: Store
    let cutoff: Date
    let dryRun: Bool

    struct Outcome {
        var packsDeleted = 0
        var temporaryDeleted = 0
        var bytesFreed: Int64 = 0
        var inGrace = 0
    }

    func sweep() throws -> Outcome {
        var outcome = Outcome()
        // The files first, the index after: a pack indexed in between is then seen as indexed.
        let onDisk = try store.layout.packFilesOnDisk()
        let indexed = Set(try store.index.packs().map(\.name))
        for name in onDisk where !indexed.contains(name) {
            let path = store.layout.packPath(name)
            guard case let (size, mtime)? = Self.sizeAndModification(path) else { continue }
            guard mtime < cutoff else { outcome.inGrace += 1; continue }
            if !dryRun {
                store.readers.evict(path)
                guard unlink(path) == 0 else { continue }
            }
            outcome.packsDeleted += 1
            outcome.bytesFreed += size
        }
        let tmp = store.layout.tmpDirectory
        for f in (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? [] {
            let path = tmp + "/" + f
            guard case let (size, mtime)? = Self.sizeAndModification(path), mtime < cutoff, Self.abandoned(path) else { continue }
            if !dryRun { guard unlink(path) == 0 else { continue } }
            outcome.temporaryDeleted += 1
            outcome.bytesFreed += size
        }
        return outcome
    }

    static func sizeAndModification(_ path: String) -> (Int64, Date)? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return (Int64(st.st_size), Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9))
    }

    /// No writer holds the file's flock (`PackWriter` holds it while the pack is open).
    static func abandoned(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return flock(fd, LOCK_EX | LOCK_NB) == 0
    }
}
