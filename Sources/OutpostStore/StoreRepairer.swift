import Foundation
import GRDB
import Logging
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

extension StoreLayout {
    /// Packs a repair took out of use: kept for inspection, never deleted by outpost (docs/format.md §1).
    public var quarantineDirectory: String { root + "/quarantine" }
    public func quarantinePath(_ file: String) -> String { quarantineDirectory + "/" + file }
}

/// What `relay check --repair` did.
public struct StoreRepairReport: Sendable, Encodable {
    /// One damaged pack and what became of it.
    public struct PackOutcome: Sendable, Encodable {
        public var pack: String
        /// The first problem the check found in it.
        public var problem: String
        /// Its damaged or unreadable blobs, fetched back from the second copy into new packs.
        public var fetched = 0
        /// Its intact blobs, copied into new packs.
        public var copied = 0
        /// Where its file went; nil when it had no file, or when it stays in place.
        public var quarantinedAt: String?
        /// Some of its blobs could not be repaired: the pack keeps them, in place (the others moved out).
        public var keptInPlace = false
    }

    /// A blob the repair could not mend, and why.
    public struct Unrepairable: Sendable, Encodable {
        public var blob: String
        public var pack: String?
        public var reason: String
    }

    public var packs: [PackOutcome] = []
    /// Blobs the index lacked, fetched back and stored.
    public var missingFetched = 0
    public var unrepairable: [Unrepairable] = []
    /// Packs an interrupted repair had quarantined and unindexed but not yet taken out of `packs/`.
    public var finishedQuarantines: [String] = []
    public var blobsFetched = 0
    public var bytesFetched: Int64 = 0
    public var blobsCopied = 0
    public var rounds = 0
    public var packsQuarantined: Int { packs.count(where: { $0.quarantinedAt != nil }) }
}

/// Mends a store from a second copy of its blobs (the relay's vault, through `fetch`): `relay check --repair`.
///
/// For each pack the check found damaged, in this order, so that a repair killed at any moment loses nothing
/// and the next run finishes it (docs/vault.md §13.1):
/// 1. its blobs are read where the index says and verified; each that fails is fetched, verified against its
///    id and written into a new pack; if all could be had, its intact blobs are copied (verified again) after
///    them. The new packs are sealed (durable in `packs/`) but not indexed;
/// 2. the pack file gets a second name, `quarantine/NAME.pack` (a hard link: the bytes are never copied, and
///    from here on a gc that removes the `packs/` name removes no data);
/// 3. one transaction indexes the new packs, moves every blob row of the pack to its new copy
///    (`… WHERE pack_id = old`) and deletes the pack's row, which no blob row names any more;
/// 4. the `packs/` name is removed.
/// A pack with a blob no copy can give stays in place, holding it (and its other intact blobs); its fetched blobs
/// still move. Blobs the index lacks are fetched and stored as a push stores them (`Store.save`, `flush`).
///
/// It takes `STORE/gc.lock` (no gc moves or deletes rows under it) and the store's shared lock, so it runs while
/// `relay serve` serves: readers whose pack vanished read the index again (Store+Reading.swift), and writers only
/// add packs.
public struct StoreRepairer: Sendable {
    /// A blob the second copy cannot give, and why. `fetch` throws it for one blob; any other error ends the repair.
    public struct Unavailable: Error, Sendable {
        public var reason: String
        public init(_ reason: String) { self.reason = reason }
    }

    /// The blob from the second copy; nil when it does not hold it.
    public typealias Fetch = @Sendable (BlobID) async throws -> PreparedBlob?

    /// Where a test stops the first quarantine, as a repair killed there would.
    package enum Step: Sendable { case copied, linked, committed }

    let store: Store
    let fetch: Fetch
    let logger: Logger
    package var stopAfter: Step?

    public init(store: Store, logger: Logger = Logger(label: "outpost.repair"), fetch: @escaping Fetch) {
        self.store = store
        self.logger = logger
        self.fetch = fetch
    }

    /// Repairs what `found` names, checks the store again (its structure and trees: what a repair writes is
    /// verified as it is written), and repeats while a round mends something that reveals more (trees fetched
    /// back name blobs the first check could not see). Returns what it did and the last check.
    public func run(_ found: CheckReport, maxRounds: Int = 4) async throws -> (repair: StoreRepairReport, after: CheckReport) {
        let lock: GCLock
        do { lock = try GCLock(layout: store.layout) } catch let e as StoreError where e.code == .locked {
            throw StoreError(
                .locked,
                "a garbage collection is running on the store \(store.layout.root) (it holds gc.lock); run the repair again when it has finished — nothing was changed"
            )
        }
        defer { withExtendedLifetime(lock) {} }
        var report = StoreRepairReport()
        report.finishedQuarantines = try finishInterrupted()
        var current = found
        var given = Set<String>()
        var lost = Set<BlobID>()
        for round in 1...max(1, maxRounds) {
            let packs = current.damagedPacks.filter { !given.contains($0.key) }.sorted { $0.key < $1.key }
            let missing = current.missingBlobs.filter { !lost.contains($0.key) }.sorted { $0.key.hex < $1.key.hex }
            if packs.isEmpty && missing.isEmpty { break }
            report.rounds = round
            let rows = Dictionary(try store.index.packs().map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for (name, problem) in packs {
                // Gone since the check (a gc finished before this repair took gc.lock): nothing to mend.
                guard let pack = rows[name] else { continue }
                let outcome = try await repair(pack, problem: problem, report: &report)
                if outcome.keptInPlace { given.insert(name) }
                report.packs.append(outcome)
                if stopAfter != nil { return (report, current) }
            }
            for (id, kind) in missing {
                guard let blob = try await fetchVerified(id, pack: nil, report: &report) else { lost.insert(id); continue }
                try store.save([PreparedBlob(id: id, kind: kind, compression: blob.compression, stored: blob.stored, rawLength: blob.rawLength)])
                report.missingFetched += 1
            }
            try store.flush()
            current = try StoreChecker(store: store, readData: false).run()
        }
        return (report, current)
    }

    /// One damaged pack: steps 1 to 4 above.
    private func repair(_ pack: PackRecord, problem: String, report: inout StoreRepairReport) async throws -> StoreRepairReport.PackOutcome {
        var outcome = StoreRepairReport.PackOutcome(pack: pack.name, problem: problem)
        let path = store.layout.packPath(pack.name)
        let rows = try store.index.entries(ofPack: pack.id)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        let missingFile = fd < 0 && errno == ENOENT
        defer { if fd >= 0 { close(fd) } }
        let decompressor = ZstdDecompressor()
        func intact(_ e: PackEntry) -> PreparedBlob? {
            guard fd >= 0, let stored = try? FileIO.readExactly(fd, offset: e.offset, count: e.storedLength, path: path) else { return nil }
            let ok =
                (try? stored.withUnsafeBytes {
                    try PreparedBlob.open(
                        stored: $0, id: e.id, compression: e.compression, rawLength: e.rawLength, decompressor: decompressor, what: "")
                }) != nil
            return ok ? PreparedBlob(id: e.id, kind: e.kind, compression: e.compression, stored: stored, rawLength: e.rawLength) : nil
        }
        let bad = Set(rows.filter { intact($0) == nil }.map(\.id))
        var output = RepairOutput(layout: store.layout, target: store.config.packTargetSize)
        var unrepaired = 0
        do {
            for e in rows where bad.contains(e.id) {
                guard let blob = try await fetchVerified(e.id, pack: pack.name, report: &report) else { unrepaired += 1; continue }
                // Stored under the kind the index knew it as.
                try output.append(PreparedBlob(id: e.id, kind: e.kind, compression: blob.compression, stored: blob.stored, rawLength: blob.rawLength))
                outcome.fetched += 1
            }
            if unrepaired == 0 {
                for e in rows where !bad.contains(e.id) {
                    guard let blob = intact(e) else {
                        throw StoreError(
                            .corrupt,
                            "blob \(e.id.shortHex) of pack \(pack.name) read intact, then damaged: the disk under \(path) may be failing; nothing was changed for this pack, run the repair again"
                        )
                    }
                    try output.append(blob)
                    outcome.copied += 1
                }
            }
        } catch {
            output.abandon()
            throw error
        }
        let written = try output.seal()
        report.blobsCopied += outcome.copied
        if stopAfter == .copied { return outcome }

        let complete = unrepaired == 0
        var quarantined: String?
        if complete && !missingFile {
            quarantined = try link(path, name: pack.name)
            if stopAfter == .linked {
                outcome.quarantinedAt = quarantined
                return outcome
            }
        }
        let dropped = try commit(written, from: pack.id, dropPack: complete)
        outcome.keptInPlace = !dropped
        guard dropped else {
            logger.warning("damaged pack kept in place", metadata: ["pack": "\(pack.name)", "unrepaired blobs": "\(unrepaired)"])
            return outcome
        }
        outcome.quarantinedAt = quarantined
        if stopAfter == .committed { return outcome }
        store.readers.evict(path)
        if quarantined != nil || !missingFile {
            if quarantined == nil { outcome.quarantinedAt = try moveAside(path, name: pack.name) }
            unlink(path)
            try? FileIO.fsyncDirectory((path as NSString).deletingLastPathComponent)
        }
        return outcome
    }

    /// The blob from the second copy, verified against `id`; nil (and a line in `report`) when it cannot be had.
    private func fetchVerified(_ id: BlobID, pack: String?, report: inout StoreRepairReport) async throws -> PreparedBlob? {
        func lose(_ reason: String) -> PreparedBlob? {
            report.unrepairable.append(.init(blob: id.hex, pack: pack, reason: reason))
            return nil
        }
        let blob: PreparedBlob?
        do { blob = try await fetch(id) } catch let e as Unavailable { return lose(e.reason) }
        guard let blob else { return lose("the vault does not hold it (it was never forwarded, or the ledger lost it)") }
        guard blob.id == id else { return lose("the vault answered with another blob (\(blob.id.shortHex))") }
        do {
            _ = try blob.stored.withUnsafeBytes {
                try PreparedBlob.open(
                    stored: $0, id: id, compression: blob.compression, rawLength: blob.rawLength, decompressor: ZstdDecompressor(),
                    what: "blob \(id.shortHex) from the vault")
            }
        } catch {
            return lose("the vault's copy does not hash to its id: \(error)")
        }
        report.blobsFetched += 1
        report.bytesFetched += Int64(blob.stored.count)
        return blob
    }

    /// Step 2: a second name for the pack file in `quarantine/`, made durable; nil when the file system has no
    /// hard links (the file is then renamed there after the commit). An earlier, interrupted run's link is reused.
    private func link(_ path: String, name: String) throws -> String? {
        let dir = store.layout.quarantineDirectory
        try FileIO.makeDirectory(dir)
        guard let inode = Self.inode(path) else { throw StoreError.system(errno, "reading", path) }
        for n in 0..<100 {
            let target = store.layout.quarantinePath(n == 0 ? "\(name).pack" : "\(name)-\(n).pack")
            if Glibc.link(path, target) == 0 {
                try FileIO.fsyncDirectory(dir)
                return target
            }
            switch errno {
            case EEXIST:
                if Self.inode(target) == inode { return target }
            case EPERM, EXDEV, ENOTSUP, EMLINK:
                return nil
            default:
                throw StoreError.system(errno, "linking the damaged pack into", target)
            }
        }
        throw StoreError(.io, "\(dir) holds 100 other files named after pack \(name); move some of them away and run the repair again")
    }

    /// Without a hard link: the pack file renamed into `quarantine/` after the commit.
    private func moveAside(_ path: String, name: String) throws -> String {
        for n in 0..<100 {
            let target = store.layout.quarantinePath(n == 0 ? "\(name).pack" : "\(name)-\(n).pack")
            if access(target, F_OK) == 0 { continue }
            if rename(path, target) != 0 { throw StoreError.system(errno, "moving the damaged pack into", target) }
            try FileIO.fsyncDirectory(store.layout.quarantineDirectory)
            return target
        }
        throw StoreError(
            .io, "\(store.layout.quarantineDirectory) holds 100 other files named after pack \(name); move some away and run the repair again")
    }

    /// Step 3, in one transaction: the new packs indexed, the old pack's rows moved to them, and (with
    /// `dropPack`) the old pack's row deleted when no blob row names it any more. Returns whether it was.
    private func commit(_ written: [(name: String, size: Int, entries: [PackEntry])], from old: Int64, dropPack: Bool) throws -> Bool {
        try store.index.write("moving repaired blobs to their new packs") { db in
            let move = try db.cachedStatement(
                sql: """
                    UPDATE blobs SET pack_id = ?, offset = ?, kind = ?, compression = ?, stored_length = ?, raw_length = ?
                    WHERE id = ? AND pack_id = ?
                    """)
            for p in written {
                try db.execute(
                    sql: "INSERT INTO packs (name, size, blob_count, created_at) VALUES (?, ?, ?, ?)",
                    arguments: [p.name, p.size, p.entries.count, Date().timeIntervalSince1970])
                let id = db.lastInsertedRowID
                for e in p.entries {
                    try move.execute(arguments: [
                        id, e.offset, Int(e.kind.rawValue), Int(e.compression.rawValue), e.storedLength, e.rawLength, e.id.data, old,
                    ])
                }
            }
            guard dropPack else { return false }
            try db.execute(
                sql: "DELETE FROM packs WHERE id = ? AND NOT EXISTS (SELECT 1 FROM blobs WHERE pack_id = ?)", arguments: [old, old])
            return db.changesCount > 0
        }
    }

    /// Finishes what a repair killed after its commit left: a `packs/` file no index row names whose inode a
    /// `quarantine/` file shares loses its `packs/` name.
    private func finishInterrupted() throws -> [String] {
        let quarantined = Self.quarantinedInodes(store.layout)
        guard !quarantined.isEmpty else { return [] }
        let indexed = Set(try store.index.packs().map(\.name))
        var done: [String] = []
        for name in try store.layout.packFilesOnDisk() where !indexed.contains(name) {
            let path = store.layout.packPath(name)
            guard let inode = Self.inode(path), quarantined[inode] != nil else { continue }
            store.readers.evict(path)
            if unlink(path) == 0 {
                try? FileIO.fsyncDirectory((path as NSString).deletingLastPathComponent)
                done.append(name)
            }
        }
        return done
    }

    struct Inode: Hashable { var device: UInt64; var number: UInt64 }

    static func inode(_ path: String) -> Inode? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Inode(device: UInt64(st.st_dev), number: UInt64(st.st_ino))
    }

    /// The files in `quarantine/`, by inode.
    static func quarantinedInodes(_ layout: StoreLayout) -> [Inode: String] {
        var out: [Inode: String] = [:]
        for f in (try? FileManager.default.contentsOfDirectory(atPath: layout.quarantineDirectory)) ?? [] {
            if let i = inode(layout.quarantinePath(f)) { out[i] = f }
        }
        return out
    }
}

/// The new packs a pack's repair writes, sealed at the store's pack size.
private struct RepairOutput {
    let layout: StoreLayout
    let target: Int
    var writer: PackWriter?
    var sealed: [(name: String, size: Int, entries: [PackEntry])] = []

    init(layout: StoreLayout, target: Int) {
        self.layout = layout
        self.target = target
    }

    mutating func append(_ blob: PreparedBlob) throws {
        if writer == nil { writer = try PackWriter(layout: layout) }
        try writer!.append(blob)
        if writer!.size >= target { try sealOpen() }
    }

    private mutating func sealOpen() throws {
        guard let w = writer else { return }
        writer = nil
        if w.isEmpty { w.abandon(); return }
        sealed.append(try w.seal())
    }

    mutating func seal() throws -> [(name: String, size: Int, entries: [PackEntry])] {
        try sealOpen()
        return sealed
    }

    mutating func abandon() {
        writer?.abandon()
        writer = nil
    }
}
