import Foundation
import Logging
import OutpostCore
import OutpostCrypto
import OutpostStore

/// Rebuilds a relay's store from its vault container: every recovery point the vault holds, with everything it
/// needs, fetched, unsealed, verified against its id and stored; machines regain read access to their own points
/// once they enroll again. Needs nothing but a (recovery) credentials file and the passphrase.
///
/// In phases: the points to rebuild and the packs' catalog; every pack read whole and stored (bulk); then each
/// point walked, fetching what the bulk phase could not give from another copy, and recorded (catalog,
/// machine ownership, ledger).
public struct Rebuilder: Sendable {
    let forwarder: Forwarder
    let ownership: Ownership
    let logger: Logger

    /// Gives a rebuilt point's machine its blobs back: every blob the point needs, and its trees (verified by
    /// the rebuild). The relay's machine catalog does it; the binary wires it in.
    public typealias Ownership = @Sendable (_ machine: String, _ blobs: [BlobID], _ verifiedTrees: [BlobID]) throws -> Void

    public init(forwarder: Forwarder, ownership: @escaping Ownership, logger: Logger) {
        self.forwarder = forwarder
        self.ownership = ownership
        self.logger = logger
    }

    public struct Report: Sendable {
        public var points = 0
        public var blobs = 0
        public var bytes: Int64 = 0
        /// Points whose chunks were fetched (rehydrated) after a catalog-only run.
        public var rehydrated = 0
        /// Points left waiting for their chunks (a catalog-only run): restores fetch those from the vault.
        public var waiting = 0
    }

    var store: Store { forwarder.store }

    /// The points a catalog-only rebuild adopted without their chunks, until a later run rehydrates them:
    /// `DATA/vault/rehydrate.json` (an array of point ids in hex).
    var rehydrationPath: String { VaultLink.paths(forwarder.data).dir + "/rehydrate.json" }

    func waitingPoints() -> Set<BlobID> {
        guard let bytes = FileManager.default.contents(atPath: rehydrationPath),
            let hex = try? JSONDecoder().decode([String].self, from: bytes)
        else { return [] }
        return Set(hex.compactMap(BlobID.init(hex:)))
    }

    func saveWaiting(_ ids: Set<BlobID>) throws {
        if ids.isEmpty {
            try? FileManager.default.removeItem(atPath: rehydrationPath)
            return
        }
        let bytes = Array(try JSONEncoder().encode(ids.map(\.hex).sorted()))
        do { try DurableFile.write(bytes, to: rehydrationPath, mode: 0o600) } catch {
            throw ForwarderError(.io, "cannot write \(rehydrationPath): \(error)")
        }
    }

    /// `catalogOnly`: bring back the catalog alone (each point's record and trees, machines' ownership, the
    /// ledger's map of where every blob is in the vault), so that the relay restores at once, fetching chunks
    /// from the vault as restores need them; the points are remembered for a later run to rehydrate. Otherwise
    /// the catalog first (`progress` is told when it is complete), then every pack read whole and every
    /// point's missing chunks fetched, including those of points an earlier catalog-only run adopted.
    public func run(catalogOnly: Bool = false, catalogReady: @Sendable (Report) -> Void = { _ in }) async throws -> Report {
        var report = Report()
        let pending = try await pointsToRebuild()
        var waiting = waitingPoints()
        guard !pending.isEmpty || (!catalogOnly && !waiting.isEmpty) else {
            report.waiting = waiting.count
            return report
        }
        // Where every blob is, from the packs' own indexes: the lost relay's ledger went with it.
        let catalog = try await forwarder.reader.catalog()
        var copies = VaultCopies(reader: forwarder.reader, catalog: catalog, logger: logger)
        // Listed for rehydration before any is adopted, in one write: a point killed before its adoption is listed
        // but not in the catalog, and the rehydration passes over it (the next run adopts it).
        waiting.formUnion(pending)
        if !pending.isEmpty { try saveWaiting(waiting) }
        // The catalog: records and trees (and, with every ledger row, where each chunk is).
        for pid in pending {
            let (record, recordBlob) = try await fetchRecord(pid, copies: &copies)
            let (all, trees) = try await fetchMissing(of: pid, record: record, copies: &copies, report: &report, chunks: false)
            try store.save([recordBlob])
            _ = try store.adopt(pointID: pid, record: record)
            try ownership(record.machine, all, trees)
            try recordInLedger(pid, all: all, copies: &copies, bulk: [:])
            report.points += 1
            logger.info("recovery point's catalog rebuilt from the vault", metadata: ["point": "\(pid.shortHex)", "machine": "\(record.machine)"])
        }
        try store.flush()
        report.waiting = waiting.count
        catalogReady(report)
        if catalogOnly { return report }

        // Rehydration: every pack read whole, then each waiting point walked for what is still missing.
        let bulk = try await storeWholePacks(catalog, report: &report)
        try store.flush()
        let points = Dictionary(try store.index.points().map { ($0.id, $0.point) }, uniquingKeysWith: { a, _ in a })
        // The list is rewritten once at the end: a run killed midway walks the points it finished again, and finds
        // nothing missing in them.
        for pid in waiting.sorted() {
            guard let record = points[pid] else {
                waiting.remove(pid)
                continue
            }
            let (all, _) = try await fetchMissing(of: pid, record: record, copies: &copies, report: &report, chunks: true)
            try recordInLedger(pid, all: all, copies: &copies, bulk: bulk)
            waiting.remove(pid)
            report.rehydrated += 1
        }
        try saveWaiting(waiting)
        report.waiting = waiting.count
        return report
    }

    /// The recovery points the vault holds that the store does not.
    private func pointsToRebuild() async throws -> [BlobID] {
        let have = Set(try store.index.points().map(\.id))
        return try await forwarder.reader.points().filter { !have.contains($0) }
    }

    /// Bulk phase: every pack read whole (one request per ~8 MiB rather than one per blob), a few at once, each
    /// entry authenticated and hashed before it is stored. What a damaged pack could not give is fetched from
    /// another copy by the walk, which also proves every point complete. Returns where each stored blob was.
    private func storeWholePacks(_ catalog: [BlobID: [VaultLocation]], report: inout Report) async throws -> [BlobID: VaultLocation] {
        var bulkPlaced: [BlobID: VaultLocation] = [:]
        let packKeys = Set(catalog.values.flatMap { $0.map(\.pack) }).sorted()
        try await withThrowingTaskGroup(of: [(PreparedBlob, VaultLocation)].self) { group in
            var next = 0
            func launch() {
                guard next < packKeys.count else { return }
                let key = packKeys[next]
                next += 1
                group.addTask { try await self.readPack(key) }
            }
            for _ in 0..<4 { launch() }
            while let entries = try await group.next() {
                let absent = try store.missing(entries.map(\.0.id))
                var seen = Set<BlobID>()
                let fresh = entries.filter { absent.contains($0.0.id) && bulkPlaced[$0.0.id] == nil && seen.insert($0.0.id).inserted }
                _ = try store.save(fresh.map(\.0))
                for (blob, loc) in fresh {
                    bulkPlaced[blob.id] = loc
                    report.blobs += 1
                    report.bytes += Int64(blob.stored.count)
                }
                launch()
            }
        }
        return bulkPlaced
    }

    /// Every entry of one vault pack that opens and hashes right, with its place; a damaged entry or index is
    /// logged and left to the walk (another copy, or a clear error naming what is missing).
    private func readPack(_ key: String) async throws -> [(PreparedBlob, VaultLocation)] {
        guard let pack = try await forwarder.vault.get(key) else { return [] }
        let index: [VaultPack.IndexEntry]
        do { index = try VaultPack.readIndex(pack: pack, key: key, sealer: forwarder.sealer) } catch let e as ForwarderError where e.code == .tampered
        {
            logger.warning("damaged vault pack passed over", metadata: ["pack": "\(key)", "error": "\(e.message)"])
            return []
        }
        let d = ZstdDecompressor()
        var out: [(PreparedBlob, VaultLocation)] = []
        for e in index {
            let loc = e.location
            do {
                guard let range = VaultPack.entryRange(loc, packSize: pack.count) else {
                    throw ForwarderError(.tampered, "vault pack \(key) is cut off")
                }
                out.append(
                    (
                        try VaultPack.openEntry(
                            pack[range], key: key, id: e.id, kind: loc.kind,
                            sealer: forwarder.sealer, decompressor: d), loc
                    ))
            } catch let err as ForwarderError where err.code == .tampered {
                logger.warning("damaged copy passed over", metadata: ["blob": "\(e.id.shortHex)", "pack": "\(key)"])
            }
        }
        return out
    }

    /// The point's record, fetched and decoded (its blob is stored once the point is complete).
    private func fetchRecord(_ pid: BlobID, copies: inout VaultCopies) async throws -> (RecoveryPoint, PreparedBlob) {
        guard let recordBlob = try await copies.fetch(pid) else {
            throw ForwarderError(.vault, "recovery point \(pid.shortHex) is listed in the vault but its record is missing")
        }
        let record = try recordBlob.stored.withUnsafeBytes {
            try RecoveryPoint.decode(
                try PreparedBlob.open(
                    stored: $0, id: pid, compression: recordBlob.compression, rawLength: recordBlob.rawLength,
                    decompressor: ZstdDecompressor(), what: "recovery point \(pid.shortHex)"),
                what: "recovery point \(pid.shortHex)")
        }
        return (record, recordBlob)
    }

    /// Walks the point's trees and stores every tree and chunk the store lacks. Returns every blob the point
    /// needs (its record first) and its trees.
    /// `chunks` false: trees only (a catalog-only rebuild); the chunks' ids are still listed.
    private func fetchMissing(
        of pid: BlobID, record: RecoveryPoint, copies: inout VaultCopies,
        report: inout Report, chunks fetchChunks: Bool = true
    ) async throws -> (all: [BlobID], trees: [BlobID]) {
        guard let root = record.root else { throw ForwarderError(.vault, "recovery point \(pid.shortHex) has no valid root") }
        var all: [BlobID] = [pid]
        var trees: [BlobID] = []
        var stack = [root]
        var seen = Set<BlobID>()
        while let t = stack.popLast() {
            guard seen.insert(t).inserted else { continue }
            let tree: Tree
            if try !store.missing([t]).isEmpty {
                guard let blob = try await copies.fetch(t) else {
                    throw ForwarderError(.vault, "tree \(t.shortHex) of recovery point \(pid.shortHex) is missing from the vault")
                }
                report.bytes += Int64(blob.stored.count)
                report.blobs += 1
                // Decoded from what came back (already verified): the open pack is not readable yet.
                let plain = try blob.stored.withUnsafeBytes {
                    try PreparedBlob.open(
                        stored: $0, id: t, compression: blob.compression, rawLength: blob.rawLength,
                        decompressor: ZstdDecompressor(), what: "tree \(t.shortHex)")
                }
                tree = try Tree.decode(plain, id: t)
                try store.save([blob])
            } else {
                tree = try store.loadTree(t)
            }
            trees.append(t)
            all.append(t)
            var chunks: [BlobID] = []
            for n in tree.nodes {
                if let s = n.subtree, n.type == .directory { stack.append(s) }
                for e in n.extents { if case .chunk(let c, _) = e, seen.insert(c).inserted { chunks.append(c) } }
            }
            all += chunks
            if !fetchChunks { continue }
            for c in try store.missing(chunks).sorted() {
                guard let blob = try await copies.fetch(c) else {
                    throw ForwarderError(.vault, "chunk \(c.shortHex) of recovery point \(pid.shortHex) is missing from the vault")
                }
                report.bytes += Int64(blob.stored.count)
                report.blobs += 1
                try store.save([blob])
            }
        }
        return (all, trees)
    }

    /// The ledger learns where the vault holds each of the point's blobs, and that the point is forwarded.
    private func recordInLedger(_ pid: BlobID, all: [BlobID], copies: inout VaultCopies, bulk: [BlobID: VaultLocation]) throws {
        let ledger = forwarder.ledger
        let (placed, legacy) = copies.takeFetched()
        // What was already on the relay is recorded at its first listed copy.
        let fetched = Set(placed.map(\.0)).union(legacy)
        try ledger.markSent(placed + all.compactMap { id in fetched.contains(id) ? nil : bulk[id].map { (id, $0) } })
        try ledger.markSent(
            all.filter { !fetched.contains($0) && bulk[$0] == nil }.compactMap { id in copies.catalog[id]?.first.map { (id, $0) } },
            keepExisting: true)
        try ledger.markSentLegacy(legacy)
        try ledger.set(pid, .forwarded)
    }
}

/// The walk's fetches: the first copy of a blob that opens and hashes right (a damaged one, which a repair sent
/// again elsewhere, is passed over), remembering where each fetched blob came from for the ledger.
struct VaultCopies {
    let reader: VaultReader
    let catalog: [BlobID: [VaultLocation]]
    let logger: Logger
    private var placed: [(BlobID, VaultLocation)] = []
    private var legacy: [BlobID] = []

    init(reader: VaultReader, catalog: [BlobID: [VaultLocation]], logger: Logger) {
        self.reader = reader
        self.catalog = catalog
        self.logger = logger
    }

    mutating func fetch(_ id: BlobID) async throws -> PreparedBlob? {
        guard let copies = catalog[id] else {
            let blob = try await reader.legacyBlob(id)
            if blob != nil { legacy.append(id) }
            return blob
        }
        var lastError: (any Error)?
        for loc in copies {
            do {
                if let blob = try await reader.blob(id, at: loc) {
                    placed.append((id, loc))
                    return blob
                }
            } catch let e as ForwarderError where e.code == .tampered {
                logger.warning("damaged copy passed over", metadata: ["blob": "\(id.shortHex)", "pack": "\(loc.pack)"])
                lastError = e
            }
        }
        if let lastError { throw lastError }
        return nil
    }

    /// Where the blobs fetched since the last call came from (pack copies, version 1 objects); forgets them.
    mutating func takeFetched() -> (placed: [(BlobID, VaultLocation)], legacy: [BlobID]) {
        defer { placed.removeAll(); legacy.removeAll() }
        return (placed, legacy)
    }
}
