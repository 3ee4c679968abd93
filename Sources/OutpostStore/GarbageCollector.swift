import Foundation
import Logging
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

public struct GCReport: Sendable {
    public var points = 0
    public var liveBlobs = 0
    public var deadBlobs = 0
    public var packsDeleted = 0
    public var packsRepacked = 0
    public var packsWritten = 0
    public var unindexedPacksDeleted = 0
    public var bytesFreed: Int64 = 0
    /// Packs left alone because they are younger than the grace period.
    public var packsInGrace = 0
}

/// Removes what no committed recovery point needs. Marks every blob reachable from the catalog; packs with
/// no live blob are dropped, packs with enough dead bytes are rewritten with their live blobs (copied as
/// stored, verified on the way). The index commits first, the old files are deleted after: a crash in
/// between leaves unindexed packs, which the next gc removes. Needs the store's exclusive lock.
public struct GarbageCollector {
    let store: Store
    /// A pack is rewritten when at least this share of its bytes is dead.
    let repackThreshold: Double
    /// Packs younger than this are not touched: an interrupted push resumes without re-sending their chunks.
    let grace: TimeInterval
    let now: Date
    let logger: Logger

    public init(
        store: Store, repackThreshold: Double = 0.1, grace: TimeInterval = 0, now: Date = Date(),
        logger: Logger = Logger(label: "outpost.gc")
    ) {
        self.store = store
        self.repackThreshold = repackThreshold
        self.grace = grace
        self.now = now
        self.logger = logger
    }

    public func run() throws -> GCReport {
        var report = GCReport()
        let index = store.index
        // Mark. A tree that cannot be read stops gc: liveness is then unknown, and nothing may be deleted.
        var live = Set<BlobID>()
        var stack: [BlobID] = []
        for info in try index.points() {
            report.points += 1
            live.insert(info.id)
            guard let root = info.point.root else {
                throw StoreError(
                    .corrupt, "recovery point \(info.id.shortHex) has no valid root; gc stopped without deleting anything — run `outpost check`")
            }
            stack.append(root)
        }
        while let id = stack.popLast() {
            guard live.insert(id).inserted else { continue }
            let tree: Tree
            do { tree = try store.loadTree(id) } catch {
                throw StoreError(
                    .corrupt, "tree \(id.shortHex) cannot be read (\(error)); gc stopped without deleting anything — run `outpost check --read-data`")
            }
            for node in tree.nodes {
                if let sub = node.subtree { stack.append(sub) }
                for e in node.extents { if case .chunk(let c, _) = e { live.insert(c) } }
            }
        }

        // Sweep, pack by pack.
        var byPack: [Int64: (live: [BlobID], dead: [BlobID], deadBytes: Int)] = [:]
        for b in try index.allBlobs() {
            var entry = byPack[b.packID] ?? ([], [], 0)
            if live.contains(b.id) { entry.live.append(b.id) } else { entry.dead.append(b.id); entry.deadBytes += b.storedLength }
            byPack[b.packID] = entry
        }
        var oldPacks: [(PackRecord, Bool)] = []  // (pack, repack?)
        var dead: [BlobID] = []
        for pack in try index.packs() {
            let e = byPack[pack.id] ?? ([], [], 0)
            report.liveBlobs += e.live.count
            if grace > 0 && pack.createdAt > now.addingTimeInterval(-grace) {
                if !e.dead.isEmpty { report.packsInGrace += 1 }
                continue
            }
            if e.live.isEmpty {
                oldPacks.append((pack, false)); dead += e.dead
            } else if !e.dead.isEmpty && Double(e.deadBytes) >= repackThreshold * Double(pack.size) {
                oldPacks.append((pack, true)); dead += e.dead
            }
        }
        report.deadBlobs = dead.count

        var written: [(name: String, size: Int, entries: [PackEntry])] = []
        var writer: PackWriter?
        let decompressor = ZstdDecompressor()
        for (pack, repack) in oldPacks where repack {
            let path = store.layout.packPath(pack.name)
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0 { throw StoreError.system(errno, "opening pack", path) }
            defer { close(fd) }
            for e in try index.entries(ofPack: pack.id) where live.contains(e.id) {
                let stored = try FileIO.readExactly(fd, offset: e.offset, count: e.storedLength, path: path)
                do {
                    _ = try stored.withUnsafeBytes {
                        try PreparedBlob.open(
                            stored: $0, id: e.id, compression: e.compression, rawLength: e.rawLength,
                            decompressor: decompressor, what: "blob \(e.id.shortHex) in pack \(pack.name)")
                    }
                } catch {
                    throw StoreError(.corrupt, "\(error); gc stopped without deleting anything — run `outpost check --read-data`")
                }
                if writer == nil { writer = try PackWriter(layout: store.layout) }
                try writer!.append(PreparedBlob(id: e.id, kind: e.kind, compression: e.compression, stored: stored, rawLength: e.rawLength))
                if writer!.size >= store.config.packTargetSize { written.append(try writer!.seal()); writer = nil }
            }
            report.packsRepacked += 1
        }
        if let w = writer, !w.isEmpty { written.append(try w.seal()) }
        report.packsWritten = written.count
        if !oldPacks.isEmpty {
            try index.replacePacks(newPacks: written, oldPacks: oldPacks.map(\.0.id), deadBlobs: dead)
            store.resetWrittenCache()
        }
        let newBytes = written.reduce(0) { $0 + $1.size }
        for (pack, repack) in oldPacks {
            unlink(store.layout.packPath(pack.name))
            report.bytesFreed += Int64(pack.size)
            if !repack { report.packsDeleted += 1 }
        }
        report.bytesFreed -= Int64(newBytes)

        // Packs no index row points at: left by interrupted jobs (we hold the exclusive lock, so none is in use).
        let indexed = Set(try index.packs().map(\.name))
        for name in try store.layout.packFilesOnDisk() where !indexed.contains(name) {
            let path = store.layout.packPath(name)
            report.bytesFreed += Int64(FileIO.fileSize(path) ?? 0)
            unlink(path)
            report.unindexedPacksDeleted += 1
        }
        return report
    }
}

/// Rebuilds the index from the packs alone: blobs from each pack's trailer (or, if the trailer is damaged,
/// its blob headers), recovery points from the `.point` blobs.
public struct IndexRebuilder {
    let store: Store

    public init(store: Store) { self.store = store }

    public struct Report: Sendable {
        public var packs = 0, blobs = 0, points = 0, salvagedPacks = 0
        public var problems: [String] = []
    }

    public func run() throws -> Report {
        var report = Report()
        var packs: [(name: String, size: Int, entries: [PackEntry])] = []
        var pointBlobs: [(PackEntry, String)] = []
        for name in try store.layout.packFilesOnDisk() {
            let path = store.layout.packPath(name)
            var result: (entries: [PackEntry], size: Int)
            do { result = try PackReader.entries(path: path, name: name) } catch {
                result = try PackReader.salvage(path: path, name: name)
                report.salvagedPacks += 1
                report.problems.append("pack \(name): \(error); \(result.entries.count) blobs recovered from its blob headers")
            }
            packs.append((name, result.size, result.entries))
            report.blobs += result.entries.count
            for e in result.entries where e.kind == .point { pointBlobs.append((e, name)) }
        }
        report.packs = packs.count
        var points: [(BlobID, RecoveryPoint)] = []
        let decompressor = ZstdDecompressor()
        for (e, name) in pointBlobs {
            let path = store.layout.packPath(name)
            do {
                let fd = open(path, O_RDONLY | O_CLOEXEC)
                if fd < 0 { throw StoreError.system(errno, "opening pack", path) }
                defer { close(fd) }
                let stored = try FileIO.readExactly(fd, offset: e.offset, count: e.storedLength, path: path)
                let plain = try stored.withUnsafeBytes {
                    try PreparedBlob.open(
                        stored: $0, id: e.id, compression: e.compression, rawLength: e.rawLength,
                        decompressor: decompressor, what: "recovery point \(e.id.shortHex) in pack \(name)")
                }
                points.append((e.id, try RecoveryPoint.decode(plain, what: "recovery point \(e.id.shortHex)")))
            } catch {
                report.problems.append("recovery point record \(e.id.shortHex) in pack \(name) cannot be read: \(error)")
            }
        }
        report.points = points.count
        try store.index.replaceAll(packs: packs, points: points)
        return report
    }
}
