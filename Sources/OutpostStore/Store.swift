import Foundation
import Logging
import OutpostCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The relay's local repository: zstd-compressed blobs in append-only packs, indexed by SQLite.
///
/// Write ordering (docs/format.md, "Invariants"): a pack is durable under its final name before the index
/// references it; a recovery point is recorded (one transaction) only after every blob it needs is indexed.
/// So a killed process can leave unreferenced packs (gc removes them) but never a point with missing data.
public final class Store: Sendable {
    public let layout: StoreLayout
    public let config: StoreConfiguration
    public let index: StoreIndex
    /// Shared (writers and readers, online gc) or exclusive (offline gc, rebuild-index).
    public var lockMode: StoreLock.Mode { lock.mode }
    /// The gc counter when the store was opened: a local commit checks its point's content again if gc has
    /// deleted something since (Store+Commits.swift).
    let gcGenerationAtOpen: Int64
    let logger: Logger
    private let lock: StoreLock
    private let writer: Mutex<WriterState>
    /// Packs taken out of the writer whose seal has not finished, by name. A flush waits for those taken out
    /// before it (not for a moment when none is in flight, which steady uploads of other machines might never give).
    private let sealing = Mutex<[String: DispatchGroup]>([:])
    let readers = PackReaderCache()
    let compressors: ResourcePool<ZstdCompressor>
    let decompressors = ResourcePool { ZstdDecompressor() }

    struct WriterState: ~Copyable {
        var pack: PackWriter?
        /// Blobs in this process's packs that are not indexed yet (open, or being sealed): dedup within and across
        /// this process's jobs until the index answers for them. Never older than that: an online gc in another
        /// process may delete an indexed blob, and only the index knows.
        var written = Set<BlobID>()
        var addedStored: Int64 = 0
    }

    private init(layout: StoreLayout, config: StoreConfiguration, lockMode: StoreLock.Mode, purpose: String, create: Bool, logger: Logger) throws {
        self.layout = layout
        self.config = config
        self.logger = logger
        lock = try StoreLock(path: layout.lockPath, mode: lockMode, what: purpose)
        index = try StoreIndex(path: layout.indexPath, create: create)
        gcGenerationAtOpen = try index.gcGeneration()
        writer = Mutex(WriterState())
        let level = config.compressionLevel
        compressors = ResourcePool { ZstdCompressor(level: level) }
        if lockMode == .exclusive { cleanTemporaryFiles() }
    }

    /// Creates a new, empty store in `path` (which must not exist or be an empty directory).
    public static func initialize(at path: String, config: StoreConfiguration? = nil, logger: Logger = Logger(label: "outpost.store")) throws -> Store
    {
        let layout = StoreLayout(root: path)
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: layout.root, isDirectory: &isDir) {
            guard isDir.boolValue else {
                throw StoreError(.alreadyExists, "\(layout.root) exists and is not a directory; choose another path for the store")
            }
            let contents = (try? fm.contentsOfDirectory(atPath: layout.root)) ?? []
            if contents.contains("config") {
                throw StoreError(.alreadyExists, "\(layout.root) already holds a store; use it as it is, or choose an empty directory")
            }
            guard contents.isEmpty else { throw StoreError(.alreadyExists, "\(layout.root) is not empty; a store needs an empty or new directory") }
        } else {
            do { try fm.createDirectory(atPath: layout.root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]) } catch {
                throw StoreError(.io, "cannot create the store directory \(layout.root): \(error.localizedDescription)")
            }
        }
        try FileIO.makeDirectory(layout.packsRoot)
        try FileIO.makeDirectory(layout.tmpDirectory)
        var random = [UInt8](repeating: 0, count: 16)
        for i in random.indices { random[i] = UInt8.random(in: 0...255) }
        let cfg = config ?? StoreConfiguration(id: Hex.encode(random), createdAt: Date())
        try cfg.chunker.validate()
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.dateEncodingStrategy = .iso8601
        // The index first, the config last: a directory with a config is a complete store.
        let store = try Store(layout: layout, config: cfg, lockMode: .exclusive, purpose: "store init", create: true, logger: logger)
        try FileIO.writeAtomically(Array(try enc.encode(cfg)), to: layout.configPath, mode: 0o600)
        store.lock.downgrade()
        return store
    }

    /// Opens an existing store. `purpose` names the command in the message shown when the store is locked.
    public static func open(
        at path: String, lock: StoreLock.Mode = .shared, purpose: String,
        logger: Logger = Logger(label: "outpost.store")
    ) throws -> Store {
        let layout = StoreLayout(root: path)
        guard let data = FileManager.default.contents(atPath: layout.configPath) else {
            var isDir: ObjCBool = false
            if !FileManager.default.fileExists(atPath: layout.root, isDirectory: &isDir) {
                throw StoreError(.notAStore, "there is no store at \(layout.root); create one with `outpost store init --store \(layout.root)`")
            }
            throw StoreError(
                .notAStore,
                "\(layout.root) is not an Outpost store (it has no config file); check the --store path, or create a store with `outpost store init`")
        }
        struct Probe: Decodable { var format: String?; var version: Int? }
        guard let probe = try? JSONDecoder().decode(Probe.self, from: data), probe.format == StoreConfiguration.magic, let version = probe.version
        else {
            throw StoreError(.notAStore, "\(layout.configPath) is not an Outpost store config; check the --store path")
        }
        guard version <= StoreConfiguration.currentVersion else {
            throw StoreError(
                .unsupportedVersion,
                "the store \(layout.root) has format version \(version); this outpost reads up to version \(StoreConfiguration.currentVersion): upgrade outpost"
            )
        }
        let dec = JSONDecoder()
        dec.dateDecodingStrategy = .iso8601
        let config: StoreConfiguration
        do { config = try dec.decode(StoreConfiguration.self, from: data) } catch {
            throw StoreError(.corrupt, "the store config \(layout.configPath) is damaged: \(error)")
        }
        return try Store(layout: layout, config: config, lockMode: lock, purpose: purpose, create: false, logger: logger)
    }

    private func cleanTemporaryFiles() {
        for f in (try? FileManager.default.contentsOfDirectory(atPath: layout.tmpDirectory)) ?? [] {
            unlink(layout.tmpDirectory + "/" + f)
        }
    }

    // MARK: Writing

    /// Of `ids`, those not in the index (blobs in packs not yet sealed count as absent). With `touching`, the
    /// others are marked relied on now, so that a gc keeps them for its grace period (docs/format.md §13);
    /// without, the caller has touched a tree that reaches them (gc keeps all such a tree reaches).
    public func unindexed(_ ids: [BlobID], touching: Bool = true) throws -> Set<BlobID> {
        let present = try touching ? index.touch(ids) : index.present(ids)
        return Set(ids.filter { !present.contains($0) })
    }

    /// Of `ids`, those neither indexed nor in this process's unsealed packs; the indexed ones are marked relied on
    /// now (the answer "present" to a push).
    public func missing(_ ids: [BlobID]) throws -> Set<BlobID> {
        let unknown = writer.withLock { state in ids.filter { !state.written.contains($0) } }
        return unknown.isEmpty ? [] : try unindexed(unknown)
    }

    /// Appends blobs to the open pack, dropping those already stored: in this process's unsealed packs, or in
    /// the index (those are touched: the caller relies on them). A pack that is full is taken out of the
    /// writer and sealed (fsync, rename, index) after the lock is released, so that other uploads keep appending
    /// to a new pack while it syncs; `flush` waits for every such seal.
    @discardableResult
    public func save(_ blobs: [PreparedBlob]) throws -> SaveStats {
        // The index is asked outside the writer's lock: a blob another caller seals meanwhile is at worst stored
        // twice (the second copy is garbage for gc).
        let unsealed = writer.withLock { state in blobs.map(\.id).filter { !state.written.contains($0) } }
        let indexed = unsealed.isEmpty ? [] : try index.touch(unsealed)
        var full: [PackWriter] = []
        let outcome: Result<SaveStats, any Error> = writer.withLock { state in
            var stats = SaveStats()
            do {
                for blob in blobs where !state.written.contains(blob.id) && !indexed.contains(blob.id) {
                    stats.blobs += 1
                    stats.rawBytes += Int64(blob.rawLength)
                    stats.storedBytes += Int64(blob.stored.count + PackFormat.blobHeaderSize + PackFormat.entrySize)
                    if state.pack == nil { state.pack = try PackWriter(layout: layout) }
                    try state.pack!.append(blob)
                    state.written.insert(blob.id)
                    state.addedStored += Int64(blob.stored.count)
                    if state.pack!.size >= config.packTargetSize {
                        full.append(state.pack!)
                        beginSeal(state.pack!)
                        state.pack = nil
                    }
                }
            } catch {
                // A failed write leaves the open pack with a torn blob: drop it whole, and forget its blobs so
                // that they are asked for (and sent) again.
                if let pack = state.pack { Self.forget(pack, in: &state) }
                state.pack = nil
                return .failure(error)
            }
            return .success(stats)
        }
        if case .failure(let error) = outcome {
            // After a failed write (a full disk, most often) nothing more is written: packs this call filled are
            // dropped too, and their blobs are asked for again.
            writer.withLock { state in for pack in full { Self.forget(pack, in: &state) } }
            for pack in full { endSeal(pack) }
            throw error
        }
        var sealError: (any Error)?
        for pack in full {
            do { try sealTakenOut(pack) } catch { if sealError == nil { sealError = error } }
        }
        if let sealError { throw sealError }
        return try outcome.get()
    }

    /// Registers a pack taken out of the writer; called under the writer's lock, so a later flush sees it.
    private func beginSeal(_ pack: PackWriter) {
        let done = DispatchGroup()
        done.enter()
        sealing.withLock { $0[pack.name] = done }
    }

    private func endSeal(_ pack: PackWriter) {
        sealing.withLock { $0.removeValue(forKey: pack.name) }?.leave()
    }

    /// Seals a pack already taken out of the writer (and registered in `sealing`); on failure its blobs are
    /// forgotten so that they are asked for again.
    private func sealTakenOut(_ pack: PackWriter) throws {
        defer { endSeal(pack) }
        do { try seal(pack) } catch {
            writer.withLock { Self.forget(pack, in: &$0) }
            throw error
        }
    }

    /// Seals the open pack, if any, and waits for packs being sealed by other callers, so that everything
    /// saved so far is durable and indexed — or, where another caller's seal failed, forgotten (that caller gets
    /// the error). A commit therefore checks what it needs in the index afterwards, not in `written`.
    public func flush() throws {
        let open: PackWriter? = writer.withLock { state in
            let pack = state.pack
            state.pack = nil
            if let pack { beginSeal(pack) }
            return pack
        }
        var failure: (any Error)?
        if let open {
            do { try sealTakenOut(open) } catch { failure = error }
        }
        for pending in sealing.withLock({ Array($0.values) }) { pending.wait() }
        if let failure { throw failure }
    }

    private static func forget(_ pack: PackWriter, in state: inout WriterState) {
        for e in pack.entries { state.written.remove(e.id) }
        pack.abandon()
    }

    private func seal(_ pack: PackWriter) throws {
        if pack.isEmpty { pack.abandon(); return }
        let sealed = try pack.seal()
        try index.addPack(name: sealed.name, size: sealed.size, entries: sealed.entries)
        // From now on the index answers for these blobs (and touches them when asked).
        writer.withLock { state in for e in sealed.entries { state.written.remove(e.id) } }
        logger.debug("sealed pack", metadata: ["pack": "\(sealed.name)", "bytes": "\(sealed.size)", "blobs": "\(sealed.entries.count)"])
    }

    /// Forgets what this process wrote (after a failed job whose open pack was abandoned).
    public func discardOpenPack() {
        writer.withLock { state in
            if let pack = state.pack { Self.forget(pack, in: &state) }
            state.pack = nil
        }
    }

    /// Stores a blob from plaintext (trees and point records).
    @discardableResult
    public func saveBlob(kind: BlobKind, plaintext: [UInt8]) throws -> BlobID {
        let blob = compressors.with { c in plaintext.withUnsafeBytes { PreparedBlob.make(kind: kind, plaintext: $0, compressor: c) } }
        try save([blob])
        return blob.id
    }
}
