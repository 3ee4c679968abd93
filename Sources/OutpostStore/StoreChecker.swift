import Foundation
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// What `outpost check` found.
public struct CheckReport: Sendable {
    /// Damage: each line names the pack, blob, tree or recovery point and what is wrong.
    public var damage: [String] = []
    /// Things that are not damage but worth knowing (left-overs of interrupted jobs).
    public var notes: [String] = []
    /// Recovery points that cannot be fully restored.
    public var affectedPoints: [String] = []
    /// The packs with damage (missing, truncated, a bad trailer, a blob not where the index says or not hashing to
    /// its id), by name, with the first problem found: what `relay check --repair` mends and quarantines.
    public var damagedPacks: [String: String] = [:]
    /// Blobs a recovery point needs that the index lacks (every one, not only the first of each file), with the
    /// kind they are needed as: what a repair fetches back.
    public var missingBlobs: [BlobID: BlobKind] = [:]
    public var packs = 0
    public var blobs = 0
    public var points = 0
    public var trees = 0
    public var bytesRead: Int64 = 0
    public var isClean: Bool { damage.isEmpty }
}

/// Verifies the store: index ↔ packs (every indexed pack exists with its size and a trailer that lists its
/// blobs where the index says), every recovery point's trees decode and name only indexed blobs, and with
/// `readData` every blob decompresses and hashes to its id.
public struct StoreChecker {
    let store: Store
    let readData: Bool

    public init(store: Store, readData: Bool) {
        self.store = store
        self.readData = readData
    }

    public func run() throws -> CheckReport {
        var report = CheckReport()
        let index = store.index
        let packs = try index.packs()
        report.packs = packs.count
        var damagedBlobs: [BlobID: String] = [:]
        let indexed = Set(packs.map(\.name))
        for pack in packs {
            let path = store.layout.packPath(pack.name)
            let rows = try index.entries(ofPack: pack.id)
            report.blobs += rows.count
            func markAll(_ why: String) {
                report.damage.append("pack \(pack.name): \(why)")
                report.damagedPacks[pack.name] = report.damagedPacks[pack.name] ?? why
                for r in rows { damagedBlobs[r.id] = "its pack \(pack.name) \(why)" }
            }
            guard let size = FileIO.fileSize(path) else { markAll("is missing (\(path))"); continue }
            guard size == pack.size else { markAll("is \(size) bytes, the index says \(pack.size) (truncated or replaced)"); continue }
            let trailer: [PackEntry]
            do { trailer = try PackReader.entries(path: path, name: pack.name).entries } catch {
                markAll("has a damaged header or trailer: \(error)"); continue
            }
            let byID = Dictionary(trailer.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            for r in rows where byID[r.id] != r {
                report.damage.append("pack \(pack.name): blob \(r.id.shortHex) is not where the index says")
                report.damagedPacks[pack.name] = report.damagedPacks[pack.name] ?? "blob \(r.id.shortHex) is not where the index says"
                damagedBlobs[r.id] = "the index and pack \(pack.name) disagree about it"
            }
            if readData {
                let fd = open(path, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { markAll("cannot be opened: \(String(cString: strerror(errno)))"); continue }
                defer { close(fd) }
                let decompressor = ZstdDecompressor()
                for r in rows where damagedBlobs[r.id] == nil {
                    do {
                        let stored = try FileIO.readExactly(fd, offset: r.offset, count: r.storedLength, path: path)
                        report.bytesRead += Int64(stored.count)
                        _ = try stored.withUnsafeBytes {
                            try PreparedBlob.open(
                                stored: $0, id: r.id, compression: r.compression, rawLength: r.rawLength,
                                decompressor: decompressor, what: "blob \(r.id.shortHex) in pack \(pack.name)")
                        }
                    } catch {
                        report.damage.append("pack \(pack.name): blob \(r.id.shortHex) at offset \(r.offset) is damaged: \(error)")
                        report.damagedPacks[pack.name] = report.damagedPacks[pack.name] ?? "blob \(r.id.shortHex) is damaged"
                        damagedBlobs[r.id] = "it is damaged in pack \(pack.name)"
                    }
                }
            }
        }
        let quarantined = StoreRepairer.quarantinedInodes(store.layout)
        for name in try store.layout.packFilesOnDisk() where !indexed.contains(name) {
            if let inode = StoreRepairer.inode(store.layout.packPath(name)), quarantined[inode] != nil {
                report.notes.append(
                    "pack \(name) was quarantined by an interrupted repair and is no longer indexed: `outpost relay check --repair` finishes it")
                continue
            }
            report.notes.append(
                "pack \(name) is not in the index (left by an interrupted job): `outpost store gc` removes it, `outpost store rebuild-index` adopts it"
            )
        }

        // Recovery points: every tree must decode and every chunk must be indexed and undamaged.
        var known = Set<BlobID>()
        for b in try index.allBlobs() { known.insert(b.id) }
        var treeProblems: [BlobID: [String]] = [:]
        for info in try index.points() {
            report.points += 1
            var problems: [String] = []
            if !known.contains(info.id) { report.missingBlobs[info.id] = .point }
            if !known.contains(info.id) || damagedBlobs[info.id] != nil {
                problems.append("its record blob \(info.id.shortHex) is missing or damaged")
            }
            if let root = info.point.root {
                problems += walk(root, path: "", known: known, damaged: damagedBlobs, memo: &treeProblems, report: &report)
            } else {
                problems.append("it has no valid root tree id")
            }
            if !problems.isEmpty {
                report.affectedPoints.append(info.id.hex)
                for p in problems.prefix(50) {
                    report.damage.append(
                        "recovery point \(info.id.shortHex) (machine \(info.point.machine), \(info.point.finishedAt.formatted(.iso8601))): \(p)")
                }
                if problems.count > 50 { report.damage.append("recovery point \(info.id.shortHex): … and \(problems.count - 50) more damaged paths") }
            }
        }
        return report
    }

    /// Problems under one tree, as paths relative to it; memoised because trees are shared between points.
    private func walk(
        _ id: BlobID, path: String, known: Set<BlobID>, damaged: [BlobID: String],
        memo: inout [BlobID: [String]], report: inout CheckReport
    ) -> [String] {
        if let cached = memo[id] { return cached.map { path + $0 } }
        var problems: [String] = []
        if !known.contains(id) {
            report.missingBlobs[id] = .tree
            problems.append("/ (tree \(id.shortHex)) is missing from the store")
        } else if let why = damaged[id] {
            problems.append("/ (tree \(id.shortHex)) cannot be read: \(why)")
        } else {
            do {
                let tree = try store.loadTree(id)
                report.trees += 1
                for node in tree.nodes {
                    let rel = "/" + node.nameString
                    if node.type == .directory, let sub = node.subtree {
                        problems += walk(sub, path: rel, known: known, damaged: damaged, memo: &memo, report: &report)
                    }
                    // One problem per file, but every missing chunk is recorded (a repair fetches them all).
                    var named = false
                    for e in node.extents {
                        guard case .chunk(let cid, _) = e else { continue }
                        if !known.contains(cid) {
                            report.missingBlobs[cid] = .data
                            if !named { problems.append("\(rel) needs chunk \(cid.shortHex), which is missing") }
                            named = true
                        } else if let why = damaged[cid], !named {
                            problems.append("\(rel) needs chunk \(cid.shortHex), and \(why)")
                            named = true
                        }
                    }
                }
            } catch {
                problems.append("/ (tree \(id.shortHex)) cannot be read: \(error)")
            }
        }
        memo[id] = problems
        return problems.map { path + $0 }
    }
}
