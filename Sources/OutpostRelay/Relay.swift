import Foundation
import Logging
import NIOCore
import NIOPosix
import OutpostCore
import OutpostHTTP
import OutpostStore

/// What the relay does for an authenticated machine, independent of HTTP: answer "which chunks are new?",
/// verify and store uploads, commit recovery points after checking every reference, list and serve the
/// machine's own data. Errors are `HTTPFailure`s that carry their status.
public final class Relay: Sendable {
    public let store: Store
    public let catalog: MachineCatalog
    public let configuration: RelayConfiguration
    let logger: Logger
    let limits: RequestLimits
    private let decompressors = ResourcePool { ZstdDecompressor() }
    /// Tier 2: where a blob the store lacks is fetched from (the vault), if the relay is registered.
    let tier2: (@Sendable (BlobID) async throws -> PreparedBlob?)?
    /// Told after every commit (the forwarder).
    let committed: (@Sendable () -> Void)?
    /// The time of day of agents' jobs and alerts (a test's shifted clock in end-to-end tests).
    public let clock: WallClock

    public init(
        store: Store, configuration: RelayConfiguration, logger: Logger,
        tier2: (@Sendable (BlobID) async throws -> PreparedBlob?)? = nil, committed: (@Sendable () -> Void)? = nil,
        clock: WallClock = .fromEnvironment()
    ) {
        self.clock = clock
        self.store = store
        self.catalog = MachineCatalog(store: store)
        self.configuration = configuration
        self.logger = logger
        self.tier2 = tier2
        self.committed = committed
        limits = RequestLimits(configuration: configuration)
    }

    /// Runs blocking work (SQLite, pack writes and fsync, verifying an upload) on NIO's blocking thread pool, so
    /// that it never holds one of the few threads of Swift's cooperative pool (two on a 2-core relay) while
    /// other requests wait for them.
    public func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await Self.blockingPool.runIfActive(body)
    }

    /// Process-wide and never shut down (a static is never deinitialised). 4 threads per core: uploads, "which
    /// are missing?" queries and restore fetches of many machines block on disk and SQLite at once.
    static let blockingPool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: max(8, 4 * ProcessInfo.processInfo.activeProcessorCount))
        pool.start()
        return pool
    }()

    /// Of `ids`, those the machine must upload.
    public func missing(machine: Int64, _ ids: [BlobID]) throws -> [BlobID] {
        let absent = try store.missing(ids)
        switch configuration.dedupScope {
        case .relay:
            return ids.filter { absent.contains($0) }
        case .machine:
            let owned = try catalog.owned(by: machine, ids)
            return ids.filter { absent.contains($0) || !owned.contains($0) }
        }
    }

    /// Verifies every frame (decompress, SHA-256) before storing any: one bad frame rejects the whole request.
    public func upload(machine: Int64, name: String, body: [UInt8]) throws -> RelayAPI.UploadResult {
        try body.withUnsafeBytes { try upload(machine: machine, name: name, body: $0) }
    }

    /// The same from the request body in place.
    public func upload(machine: Int64, name: String, body: UnsafeRawBufferPointer) throws -> RelayAPI.UploadResult {
        let frames: [PreparedBlob]
        do { frames = try WireFormat.decodeFrames(body) } catch {
            throw HTTPFailure(.badRequest, "malformed upload from \(name): \(error)")
        }
        try checkExpansion(frames, from: name)
        try decompressors.with { d in
            for f in frames {
                guard f.kind == .data || f.kind == .tree else {
                    throw HTTPFailure(.badRequest, "upload from \(name) holds a blob of kind \(f.kind); only data and tree blobs are uploaded")
                }
                do {
                    _ = try f.stored.withUnsafeBytes {
                        try PreparedBlob.open(
                            stored: $0, id: f.id, compression: f.compression, rawLength: f.rawLength,
                            decompressor: d, what: "uploaded blob \(f.id.shortHex)")
                    }
                } catch {
                    logger.warning("rejected upload", metadata: ["machine": "\(name)", "blob": "\(f.id.shortHex)", "reason": "\(error)"])
                    throw HTTPFailure(
                        .unprocessable, "blob \(f.id.shortHex) from \(name) does not match its id (\(error)); nothing from this upload was stored")
                }
            }
        }
        // Stores what neither the index nor the open pack holds (and touches what the index holds).
        let stats = try store.save(frames)
        RelayMetrics.recordUpload(receivedBytes: body.count, receivedChunks: frames.count, stored: stats)
        let added = try catalog.addOwned(by: machine, frames.map(\.id))
        if configuration.dedupScope == .relay {
            return RelayAPI.UploadResult(received: frames.count, stored: stats.blobs, storedBytes: stats.storedBytes, rawBytes: stats.rawBytes)
        }
        // Per-machine scope: report what is new for this machine, never whether another machine had it.
        var seen = Set<BlobID>()
        let fresh = frames.filter { added.contains($0.id) && seen.insert($0.id).inserted }
        return RelayAPI.UploadResult(
            received: frames.count, stored: fresh.count,
            storedBytes: fresh.reduce(0) { $0 + Int64($1.stored.count) },
            rawBytes: fresh.reduce(0) { $0 + Int64($1.rawLength) })
    }

    /// Bounds the work a body can ask for before anything is decompressed (issue 8: 8 KB frames that expand to
    /// 256 MiB each): a data chunk expands to at most the store's largest chunk, and a request's frames to at
    /// most `WireFormat.maxUploadRawBytes` together; only a frame alone in its request (a huge folder's tree) may
    /// expand further, and then to at most 64 times its stored size.
    func checkExpansion(_ frames: [PreparedBlob], from name: String) throws {
        let maxChunk = store.config.chunker.maxSize
        var total = 0
        for f in frames {
            if f.kind == .data && f.rawLength > maxChunk {
                throw HTTPFailure(
                    .badRequest, "chunk \(f.id.shortHex) from \(name) claims \(f.rawLength) bytes; chunks of this relay are at most \(maxChunk) bytes"
                )
            }
            total += f.rawLength
        }
        let lone = frames.count == 1 && frames[0].rawLength / 64 <= frames[0].stored.count
        if total > WireFormat.maxUploadRawBytes && !lone {
            throw HTTPFailure(
                .tooLarge,
                "the upload from \(name) expands to \(total) bytes, more than the \(WireFormat.maxUploadRawBytes) a request may; send fewer blobs per request (clients of this version do)"
            )
        }
    }

    /// How many of `ids`, from the first, one fetch answer holds: at most `WireFormat.maxFetchAnswerBytes` of
    /// stored bytes, and at least one blob. The client asks again for the rest (docs/protocol.md). Also the bytes
    /// that answer will hold (a blob the store lacks, fetched from the vault, counts as the largest chunk).
    /// The locations read are handed on to `fetch`, so a fetch reads the index once.
    public func fetchablePrefix(_ ids: [BlobID]) throws -> (count: Int, bytes: Int, locations: [BlobID: BlobLocation]) {
        let locations = try store.index.locations(of: ids)
        var total = 0
        for (i, id) in ids.enumerated() {
            let size = (locations[id]?.storedLength ?? store.config.chunker.maxSize) + PackFormat.blobHeaderSize
            if total + size > WireFormat.maxFetchAnswerBytes && i > 0 { return (i, total, locations) }
            total += size
        }
        return (ids.count, total, locations)
    }

    /// Commits a recovery point for the machine after checking that every tree and chunk it names is on the
    /// relay and proven held by this machine; the record's machine name is the authenticated one.
    public func commit(machine: Int64, name: String, point: RecoveryPoint, job: Int64? = nil) throws -> RecoveryPointInfo {
        guard let root = point.root else { throw HTTPFailure(.badRequest, "the recovery point from \(name) has no valid root tree id") }
        guard point.version >= 1, point.version <= RecoveryPoint.formatVersion else {
            throw HTTPFailure(
                .badRequest,
                "the recovery point from \(name) has record version \(point.version); this relay takes 1…\(RecoveryPoint.formatVersion): upgrade the relay"
            )
        }
        var record = point
        record.machine = name
        try store.flush()
        try validate(machine: machine, name: name, root: root)
        let info = try store.commit(record, contentChecked: true)
        try catalog.addOwned(by: machine, [info.id], verified: true)
        // The backup as a job (relay jobs): the agent's (or client's) job when the commit names one, which its
        // end report completes; else one recorded now, with the point's times and totals.
        let s = record.summary
        let attached = job.map { (try? JobLog(store: store).attach(point: info.id.hex, to: $0, machine: name)) ?? false } ?? false
        if !attached {
            try? JobLog(store: store).record(
                .backup, machine: name, state: s.failedFiles > 0 ? .completedWithWarnings : .completed, startedAt: record.startedAt,
                endedAt: record.finishedAt, bytes: s.bytesRead, files: s.filesNew + s.filesChanged + s.filesUnchanged,
                detail: "recovery point \(info.id.shortHex)" + (s.failedFiles > 0 ? "; \(s.failedFiles) files could not be read" : ""))
        }
        logger.info("recovery point committed", metadata: ["machine": "\(name)", "point": "\(info.id.shortHex)"])
        committed?()
        return info
    }

    /// Checks the trees a level at a time (at most 256 trees per step), so that a point with many folders costs
    /// a few index reads per level rather than per folder.
    private func validate(machine: Int64, name: String, root: BlobID) throws {
        var level = [root]
        var seen = Set<BlobID>()
        while !level.isEmpty {
            var next: [BlobID] = []
            for start in stride(from: 0, to: level.count, by: 256) {
                let group = level[start..<min(level.count, start + 256)].filter { seen.insert($0).inserted }
                next += try validateTrees(machine: machine, name: name, group)
            }
            level = next
        }
    }

    /// Checks one group of trees and returns their subtrees still to check.
    private func validateTrees(machine: Int64, name: String, _ trees: [BlobID]) throws -> [BlobID] {
        if trees.isEmpty { return [] }
        // Checked at an earlier commit, and still indexed: touched here, so that every gc from now on keeps all
        // they reach (docs/format.md §13). A gc that deleted one deleted its verified mark with it.
        let verified = try catalog.owned(by: machine, trees, verifiedOnly: true)
        let gone = verified.isEmpty ? [] : try store.unindexed(trees.filter { verified.contains($0) })
        let todo = trees.filter { !verified.contains($0) || gone.contains($0) }
        if todo.isEmpty { return [] }
        try requireHeld(machine: machine, name: name, todo, what: "tree")
        let bytes: [[UInt8]]
        do { bytes = try store.loadMany(todo) } catch {
            throw HTTPFailure(.conflict, "a tree from \(name) cannot be read (\(error)); run the backup again")
        }
        var subtrees: [BlobID] = []
        var chunks = Set<BlobID>()
        for (tid, raw) in zip(todo, bytes) {
            let tree: Tree
            do { tree = try Tree.decode(raw, id: tid) } catch {
                throw HTTPFailure(.conflict, "tree \(tid.shortHex) from \(name) cannot be read (\(error)); run the backup again")
            }
            for n in tree.nodes {
                if let sub = n.subtree, n.type == .directory { subtrees.append(sub) }
                for e in n.extents { if case .chunk(let c, _) = e { chunks.insert(c) } }
            }
        }
        // Untouched: the trees were touched just above, and every gc keeps all a touched tree reaches.
        try requireHeld(machine: machine, name: name, Array(chunks), what: "chunk", touching: false)
        try catalog.addOwned(by: machine, todo, verified: true)
        return subtrees
    }

    /// Runs after `store.flush()`: everything the machine was told is stored is indexed by then, or was dropped
    /// by a failed seal. So presence is checked in the index, not in this process's record of what it wrote; the
    /// check touches what it finds, so that an online gc keeps it until the commit lands (or reports it absent).
    private func requireHeld(machine: Int64, name: String, _ ids: [BlobID], what: String, touching: Bool = true) throws {
        if ids.isEmpty { return }
        // Untouched: those both owned and indexed in one query; only the others are looked at one by one below.
        var ids = ids
        if !touching {
            let held = try catalog.ownedAndIndexed(by: machine, ids)
            ids = ids.filter { !held.contains($0) }
            if ids.isEmpty { return }
        }
        let absent = try store.unindexed(ids, touching: touching)
        if let first = ids.first(where: { absent.contains($0) }) {
            throw HTTPFailure(
                .conflict,
                "\(what) \(first.shortHex) named by the recovery point from \(name) is not on the relay; run the backup again (it re-sends what is missing)"
            )
        }
        let owned = try catalog.owned(by: machine, ids)
        let foreign = ids.filter { !owned.contains($0) }
        if foreign.isEmpty { return }
        if configuration.dedupScope == .relay {
            try catalog.addOwned(by: machine, foreign)
            return
        }
        throw HTTPFailure(
            .conflict,
            "\(what) \(foreign[0].shortHex) (and \(foreign.count - 1) more) named by the recovery point from \(name) was never uploaded by it; run the backup again"
        )
    }

    public func points(name: String) throws -> [RecoveryPointInfo] {
        try store.index.points(machine: name)
    }

    /// The machine's points with where each is (`GET /v1/points`): those pruned from the relay that the vault
    /// still holds are listed too (tier `vault`), when this relay serves from a vault.
    public func tieredPoints(name: String) throws -> [TieredPoint] {
        try PointTiers(store: store, vault: tier2 != nil).list(machine: name)
    }

    /// Stored bytes of blobs the machine holds, as frames; a blob it does not hold is refused (403).
    public func fetch(machine: Int64, name: String, _ ids: [BlobID], locations: [BlobID: BlobLocation]? = nil) async throws -> ByteBuffer {
        try await fetch(machine: machine, name: name, ids, locations: locations, tier: .auto).frames
    }

    /// The same from the tier asked for (`Outpost-Tier`), with the stored bytes of the frames that came from the
    /// vault (`Outpost-Vault-Bytes`): `relay` never asks the vault, `vault` asks it for every blob.
    public func fetch(
        machine: Int64, name: String, _ ids: [BlobID], locations: [BlobID: BlobLocation]? = nil, tier: RelayAPI.FetchTier
    ) async throws -> (frames: ByteBuffer, vaultBytes: Int64) {
        let owned = try catalog.owned(by: machine, ids)
        if let foreign = ids.first(where: { !owned.contains($0) }) {
            throw HTTPFailure(.forbidden, "blob \(foreign.shortHex) does not belong to a recovery point of \(name)")
        }
        if tier == .vault { return try await fetchFromVault(ids, for: name) }
        let tier2 = tier == .relay ? nil : self.tier2
        // Every blob is checked for damage before it is served (zstd's content checksum, else decompressed and
        // hashed, as the forwarder checks what it sends): the bytes were verified when they arrived, so what fails
        // now was damaged on the relay's disk, and is fetched from the vault (tier 2) like a missing blob instead
        // of failing the client's own check (issue 8).
        @Sendable func damage(_ b: PreparedBlob) -> (any Error)? {
            do {
                try decompressors.with { d in
                    try b.stored.withUnsafeBytes {
                        try PreparedBlob.checkIntegrity(
                            stored: $0, id: b.id, compression: b.compression, rawLength: b.rawLength,
                            decompressor: d, what: "blob \(b.id.shortHex) on the relay")
                    }
                }
                return nil
            } catch { return error }
        }
        // The check only serves to find a better copy: a relay without a vault has none, serves what it stores, and
        // leaves the check to the client (which verifies every blob anyway) — a restore from it costs no extra CPU.
        let check = tier2 != nil
        // The common case in one index read; anything missing, unreadable or damaged is retried blob by blob below.
        if let all = try? await offload({
            try (locations.map { try self.store.loadStoredMany(ids, at: $0) } ?? self.store.loadStoredMany(ids)).map { b in
                b.flatMap { !check || damage($0) == nil ? $0 : nil }
            }
        }),
            all.allSatisfy({ $0 != nil })
        {
            return (ByteBuffer(frames: all.map { $0! }), 0)
        }
        var blobs: [PreparedBlob] = []
        var vaultBytes: Int64 = 0
        for id in ids {
            var damaged: PreparedBlob?
            do {
                let loaded = try await offload { () -> (PreparedBlob, (any Error)?)? in
                    guard let b = try self.store.loadStored(id) else { return nil }
                    return (b, check ? damage(b) : nil)
                }
                if let (b, problem) = loaded {
                    guard let problem else { blobs.append(b); continue }
                    logger.warning(
                        "blob damaged on the relay\(tier2 == nil ? "" : ", trying the vault")",
                        metadata: ["blob": "\(id.shortHex)", "error": "\(problem)"])
                    damaged = b
                }
            } catch let e as StoreError where tier2 != nil && (e.code == .corrupt || e.code == .io) {
                logger.warning("blob unreadable on the relay, trying the vault", metadata: ["blob": "\(id.shortHex)", "error": "\(e.message)"])
            }
            // Tier 2: the vault, when the relay lost or damaged the blob (or is being rebuilt).
            do {
                if let tier2, let b = try await tier2(id) {
                    logger.info("served from the vault", metadata: ["blob": "\(id.shortHex)"])
                    blobs.append(b)
                    vaultBytes += Int64(b.stored.count)
                    continue
                }
            } catch  where damaged != nil {
                logger.warning("the vault could not serve a blob damaged on the relay", metadata: ["blob": "\(id.shortHex)", "error": "\(error)"])
            }
            if let damaged {
                // No intact copy anywhere: served as stored, so that the client's own check fails only the files
                // that need this blob, by name, instead of the whole request.
                blobs.append(damaged)
                continue
            }
            throw HTTPFailure(
                .notFound,
                tier == .relay && self.tier2 != nil
                    ? "blob \(id.shortHex) is missing from the relay's store, and the vault was not asked (tier relay); restore with --tier auto to fetch it from the vault"
                    : "blob \(id.shortHex) is missing from the relay's store\(tier2 == nil ? "" : " and from the vault"); the relay's operator should run `outpost relay check`"
            )
        }
        return (ByteBuffer(frames: blobs), vaultBytes)
    }

    /// Every blob from the vault, whether the relay holds it or not (tier `vault`: a test of the off-site copy).
    private func fetchFromVault(_ ids: [BlobID], for name: String) async throws -> (frames: ByteBuffer, vaultBytes: Int64) {
        guard let tier2 else {
            throw HTTPFailure(
                .notFound,
                "this relay forwards to no vault (or serves without it), so it has no vault tier to read from; restore with --tier auto or relay")
        }
        var blobs: [PreparedBlob] = []
        var bytes: Int64 = 0
        for id in ids {
            guard let b = try await tier2(id) else {
                throw HTTPFailure(
                    .notFound,
                    "blob \(id.shortHex) of \(name) is not in the vault (not forwarded yet, or lost there); restore with --tier auto, and have the relay's operator run `outpost relay verify-vault`"
                )
            }
            blobs.append(b)
            bytes += Int64(b.stored.count)
        }
        return (ByteBuffer(frames: blobs), bytes)
    }
}
