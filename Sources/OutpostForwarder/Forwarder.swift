import Foundation
import Logging
import OutpostCore
import OutpostCrypto
import OutpostHTTP
import OutpostStore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The relay's MARS-style agent: sends every recovery point off-site, encrypted.
///
/// For each recovery point not yet forwarded: every blob it needs that the vault has not acknowledged is
/// sealed (AES-256-GCM over the blob as stored, compressed) into vault packs under keyed names and put
/// (put-if-absent, so a retry after an interruption never duplicates), then the point's sealed entry. The ledger
/// records each acknowledged pack's blobs as it goes: an interrupted run resumes without re-uploading what the
/// vault acknowledged.
public final class Forwarder: Sendable {
    public let store: Store
    let data: String
    public let vault: VaultClient
    public let sealer: ObjectSealer
    let ledger: ForwardingLedger
    let throttle: Throttle?
    let logger: Logger
    let concurrency: Int
    public let sentBytes = Atomic<Int64>(0)
    private let decompressors = ResourcePool { ZstdDecompressor() }

    public init(store: Store, data: String, vault: VaultClient, master: MasterKey, throttle: Throttle?, concurrency: Int = 4, logger: Logger) {
        self.store = store
        self.data = data
        self.vault = vault
        self.sealer = ObjectSealer(master: master)
        self.ledger = ForwardingLedger(store: store)
        self.throttle = throttle
        self.concurrency = max(1, concurrency)
        self.logger = logger
    }

    public struct Report: Sendable { public var points = 0; public var blobs = 0; public var bytes: Int64 = 0; public var backlog = 0 }

    /// MARS's rule: the staging area must have free space of at least 5 % of the data the relay protects.
    public func checkStaging() throws {
        var fs = statvfs()
        guard statvfs(data, &fs) == 0 else { return }
        try Self.checkStaging(free: Int64(fs.f_bavail) * Int64(fs.f_frsize), protected: Int64(try store.index.totals().rawBytes), at: data)
    }

    public static func checkStaging(free: Int64, protected: Int64, at data: String) throws {
        let needed = protected / 20
        if free < needed {
            throw ForwarderError(.staging, "the forwarder's staging area \(data) has \(free / 1_048_576) MiB free; it needs at least 5 % of the \(protected / 1_048_576) MiB the relay protects (\(needed / 1_048_576) MiB): free space there before forwarding")
        }
    }

    /// Forwards every recovery point not yet forwarded. `salt` enters pack names (a repair uses a fresh one).
    public func run(salt: String = "") async throws -> Report {
        try checkStaging()
        var report = Report()
        let pending = try ledger.entries().filter { $0.state != .forwarded }
        report.backlog = pending.count
        var failed: [String] = []
        for entry in pending {
            guard let id = ChunkID(hex: entry.point) else { continue }
            do {
                try ledger.set(id, .forwarding)
                let (blobs, bytes) = try await forward(point: id, salt: salt)
                try ledger.set(id, .forwarded, bytes: bytes)
                report.points += 1
                report.blobs += blobs
                report.bytes += bytes
                report.backlog -= 1
                logger.info("recovery point forwarded", metadata: ["point": "\(id.shortHex)", "blobs": "\(blobs)", "bytes": "\(bytes)"])
            } catch let e as ForwarderError where [.unreachable, .credentials, .refused, .staging].contains(e.code) {
                // The vault (or the way to it) is the problem: every other point would fail the same way.
                try? ledger.set(id, .failed, reason: e.message)
                throw e
            } catch {
                // This point's own problem (e.g. a damaged blob on the relay): record it and go on with the others.
                try? ledger.set(id, .failed, reason: "\(error)")
                failed.append("\(id.shortHex): \(error)")
                logger.error("recovery point not forwarded", metadata: ["point": "\(id.shortHex)", "error": "\(error)"])
            }
        }
        if !failed.isEmpty {
            throw ForwarderError(.vault, "\(failed.count) recovery points could not be forwarded (the others were): \(failed.joined(separator: "; ")); see `outpost relay forwarding`")
        }
        return report
    }

    /// Stored bytes gathered into one vault pack before it is sealed and sent (docs/vault.md §9.3).
    public static let packTarget = 8 << 20
    static let maxBlobsPerPack = 4096

    private func forward(point id: ChunkID, salt: String) async throws -> (Int, Int64) {
        let info = try store.index.points().first { $0.id == id }
        guard let info, let root = info.point.root else { throw ForwarderError(.vault, "recovery point \(id.shortHex) vanished from the catalog") }
        // Every blob the point needs, trees first, then its own record blob (so a rebuilt relay gets the same id).
        var needed: [ChunkID] = []
        var seen = Set<ChunkID>()
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
        let todo = try ledger.unsent(needed)
        // Cut into packs greedily by stored size. The cut depends only on the list, so a run that resumes after
        // some packs were acknowledged forms the others exactly as before and puts the same names: a pack whose
        // acknowledgement was lost is not stored twice.
        var packs: [[ChunkID]] = []
        var current: [ChunkID] = []
        var size = 0
        for b in todo {
            guard let loc = try store.index.location(of: b) else {
                throw ForwarderError(.vault, "blob \(b.shortHex) is missing from the relay's store; run `outpost relay check`")
            }
            current.append(b)
            size += loc.storedLength
            if size >= Self.packTarget || current.count >= Self.maxBlobsPerPack {
                packs.append(current)
                current = []
                size = 0
            }
        }
        if !current.isEmpty { packs.append(current) }
        var sent = 0
        var bytes: Int64 = 0
        try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            var next = 0
            func launch() {
                guard next < packs.count else { return }
                let ids = packs[next]
                next += 1
                group.addTask { try await self.upload(pack: ids, salt: salt) }
            }
            for _ in 0..<concurrency { launch() }
            while let (n, size) = try await group.next() {
                sent += n
                bytes += Int64(size)
                launch()
            }
        }
        // Last, the point's entry under p/: a point the vault lists is complete there.
        let name = "p/" + sealer.objectName(label: "point:" + id.hex)
        let sealed = try sealer.seal(Array(id.hex.utf8), name: name, kind: VaultPack.Kind.point.rawValue)
        _ = try await vault.put(name, sealed, throttle: throttle)
        return (sent, bytes + Int64(sealed.count))
    }

    /// Loads, checks, seals and puts one pack; records where each blob landed. Returns (blobs, bytes sent).
    private func upload(pack ids: [ChunkID], salt: String) async throws -> (Int, Int) {
        var blobs: [PreparedBlob] = []
        blobs.reserveCapacity(ids.count)
        for id in ids {
            guard let blob = try store.loadStored(id) else {
                throw ForwarderError(.vault, "blob \(id.shortHex) is missing from the relay's store; run `outpost relay check`")
            }
            // Never ship damage off-site (the vault copy cannot be overwritten): the blob was re-hashed when it
            // reached the relay; here it is checked for damage since (zstd's content checksum, or SHA-256).
            do {
                try decompressors.with { d in
                    try blob.stored.withUnsafeBytes {
                        try PreparedBlob.checkIntegrity(stored: $0, id: id, compression: blob.compression, rawLength: blob.rawLength,
                                                        decompressor: d, what: "blob \(id.shortHex) on the relay")
                    }
                }
            } catch {
                throw ForwarderError(.tampered, "\(error); it was not forwarded — run `outpost relay check --read-data`")
            }
            blobs.append(blob)
        }
        var key = VaultPack.key(for: ids, salt: salt, sealer: sealer)
        var (bytes, locations) = try VaultPack.build(key: key, blobs: blobs, sealer: sealer)
        if try await !vault.put(key, bytes, throttle: throttle), try await !existingPackMatches(key, size: bytes.count, locations: locations) {
            // The vault holds another pack under this name (a damaged one a repair was replacing when it was
            // interrupted, or one cut from differently stored blobs): this one goes under a fresh name.
            logger.warning("a different pack already has this name in the vault; sending under a new one", metadata: ["pack": "\(key)"])
            key = VaultPack.key(for: ids, salt: Hex.encode((0..<8).map { _ in UInt8.random(in: 0...255) }), sealer: sealer)
            (bytes, locations) = try VaultPack.build(key: key, blobs: blobs, sealer: sealer)
            _ = try await vault.put(key, bytes, throttle: throttle)
        }
        blobs.removeAll()
        try ledger.markSent(locations)
        sentBytes.add(Int64(bytes.count), ordering: .relaxed)
        return (ids.count, bytes.count)
    }

    /// Whether the pack the vault already holds under `key` is the one just built: a put repeated after a lost
    /// acknowledgement. Its index must list the same blobs at the same places, and every entry must open and
    /// hash right (rare path: read whole).
    private func existingPackMatches(_ key: String, size: Int, locations: [(ChunkID, VaultLocation)]) async throws -> Bool {
        guard let pack = try await vault.get(key), pack.count == size else { return false }
        do {
            let index = try VaultPack.readIndex(pack: pack, key: key, sealer: sealer)
            guard index.count == locations.count, zip(index, locations).allSatisfy({ $0.id == $1.0 && $0.location == $1.1 }) else { return false }
            try decompressors.with { d in
                for (id, loc) in locations {
                    guard let range = VaultPack.entryRange(loc, packSize: pack.count) else { throw ForwarderError(.tampered, "vault pack \(key) is cut off") }
                    _ = try VaultPack.openEntry(pack[range], key: key, id: id, kind: loc.kind, sealer: sealer, decompressor: d)
                }
            }
            return true
        } catch let e as ForwarderError where e.code == .tampered {
            return false
        }
    }

    /// What `verify` found.
    public struct Verification: Sendable {
        public var checked = 0
        /// One line per damaged or missing object, naming it.
        public var damage: [String] = []
        /// Blobs whose vault copy is damaged or missing.
        public var damagedBlobs: [ChunkID] = []
        /// Recovery points whose `p/` entry is damaged or missing.
        public var damagedPoints: [ChunkID] = []
    }

    /// Reads back everything the vault acknowledged and checks it: present, authentic, and hashing to its id.
    /// Packs are read whole, one request each.
    public func verify() async throws -> Verification {
        var result = Verification()
        var byPack: [String: [(ChunkID, VaultLocation)]] = [:]
        var legacy: [ChunkID] = []
        for (id, loc) in try ledger.sent() {
            if let loc { byPack[loc.pack, default: []].append((id, loc)) } else { legacy.append(id) }
        }
        let d = ZstdDecompressor()
        for (key, members) in byPack.sorted(by: { $0.key < $1.key }) {
            result.checked += members.count
            do {
                guard let pack = try await vault.get(key) else {
                    result.damage.append("vault pack \(key) is missing (\(members.count) blobs)")
                    result.damagedBlobs += members.map(\.0)
                    continue
                }
                let index: [ChunkID: VaultPack.IndexEntry]
                do {
                    index = Dictionary(try VaultPack.readIndex(pack: pack, key: key, sealer: sealer).map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
                } catch {
                    // Without its index a pack is lost to a rebuild (which finds blobs through indexes): all of
                    // its blobs count as damaged, and a repair sends them all again.
                    result.damage.append("\(error)")
                    result.damagedBlobs += members.map(\.0)
                    continue
                }
                for (id, loc) in members {
                    do {
                        if index[id]?.location != loc {
                            throw ForwarderError(.tampered, "vault pack \(key) does not list blob \(id.shortHex) where the relay recorded it: damaged or tampered with")
                        }
                        guard let range = VaultPack.entryRange(loc, packSize: pack.count) else {
                            throw ForwarderError(.tampered, "vault pack \(key) is shorter than the relay recorded (blob \(id.shortHex) is cut off): damaged or tampered with")
                        }
                        _ = try VaultPack.openEntry(pack[range], key: key, id: id, kind: loc.kind, sealer: sealer, decompressor: d)
                    } catch {
                        result.damage.append("\(error)")
                        result.damagedBlobs.append(id)
                    }
                }
            } catch let e as ForwarderError where e.code == .unreachable || e.code == .credentials {
                throw e
            } catch {
                result.damage.append("vault pack \(key): \(error)")
                result.damagedBlobs += members.map(\.0)
            }
        }
        for id in legacy {
            result.checked += 1
            let name = Self.legacyKey(sealer.objectName(for: id))
            do {
                if try await Self.fetchLegacy(id, vault: vault, sealer: sealer) == nil {
                    result.damage.append("vault object \(name) (blob \(id.shortHex)) is missing")
                    result.damagedBlobs.append(id)
                }
            } catch let e as ForwarderError where e.code == .unreachable || e.code == .credentials {
                throw e
            } catch {
                result.damage.append("\(error)")
                result.damagedBlobs.append(id)
            }
        }
        for entry in try ledger.entries() where entry.state == .forwarded {
            result.checked += 1
            guard let pid = ChunkID(hex: entry.point) else { continue }
            let name = "p/" + sealer.objectName(label: "point:" + entry.point)
            do {
                guard let sealed = try await vault.get(name) else {
                    result.damage.append("vault object \(name) (recovery point \(entry.point.prefix(8))) is missing")
                    result.damagedPoints.append(pid)
                    continue
                }
                _ = try sealer.open(sealed, name: name)
            } catch let e as ForwarderError where e.code == .unreachable || e.code == .credentials {
                throw e
            } catch {
                result.damage.append("\(error)")
                result.damagedPoints.append(pid)
            }
        }
        return result
    }

    /// What `repair` did.
    public struct Repair: Sendable {
        public var resent = 0
        public var bytes: Int64 = 0
        /// Damage the relay cannot mend (it no longer holds the blob), one line each.
        public var unrepairable: [String] = []
    }

    /// Sends again, into new packs, every damaged or missing blob the relay still holds intact, and puts back
    /// damaged point entries. A damaged pack stays in the vault (it may be immutable); nothing refers to its
    /// damaged entries any more.
    public func repair(_ found: Verification) async throws -> Repair {
        var out = Repair()
        var fixable: [ChunkID] = []
        for id in found.damagedBlobs {
            if (try? store.loadStored(id)) != nil { fixable.append(id) } else {
                out.unrepairable.append("blob \(id.shortHex) is no longer on the relay either: the recovery points that need it cannot be restored from the vault")
            }
        }
        for pid in found.damagedPoints {
            let name = "p/" + sealer.objectName(label: "point:" + pid.hex)
            do { try await vault.delete(name) } catch let e as ForwarderError where e.code == .refused {
                out.unrepairable.append("the entry of recovery point \(pid.shortHex) cannot be replaced: \(e.message)")
            }
        }
        try ledger.unmark(fixable)
        try ledger.reopenForwarded()
        // A fresh salt: the new packs never take the name of a damaged one (and should this run be cut short,
        // the next forward finds the damaged pack under the old name and does not take it: see upload).
        do {
            let report = try await run(salt: Hex.encode((0..<8).map { _ in UInt8.random(in: 0...255) }))
            out.resent = report.blobs
            out.bytes = report.bytes
        } catch let e as ForwarderError where [.unreachable, .credentials, .refused, .staging].contains(e.code) {
            throw e
        } catch {
            // Other points' own failures (e.g. a blob damaged on the relay): reported, and the re-check goes on.
            out.unrepairable.append("forwarding during the repair: \(error)")
        }
        return out
    }

    static func legacyKey(_ name: String) -> String { "c/" + name.prefix(2) + "/" + name }

    /// A blob back from the vault (tier 2): read where the ledger says it is, unsealed, decompressed and checked
    /// against its id. nil when the vault never acknowledged it.
    public func fetch(_ id: ChunkID) async throws -> PreparedBlob? {
        guard let placed = try ledger.location(of: id) else {
            // Not in the ledger (an index rebuilt from the packs forgets it): the packs' own indexes, read once.
            for loc in try await cachedCatalog()[id] ?? [] {
                do {
                    if let blob = try await Self.fetch(id, at: loc, vault: vault, sealer: sealer) { return blob }
                } catch let e as ForwarderError where e.code == .tampered {
                    logger.warning("damaged vault copy passed over", metadata: ["blob": "\(id.shortHex)", "pack": "\(loc.pack)", "error": "\(e.message)"])
                }
            }
            return try await Self.fetchLegacy(id, vault: vault, sealer: sealer)
        }
        guard let loc = placed.location else { return try await Self.fetchLegacy(id, vault: vault, sealer: sealer) }
        return try await Self.fetch(id, at: loc, vault: vault, sealer: sealer)
    }

    private let catalogCache = Mutex<(at: Date, catalog: [ChunkID: [VaultLocation]])?>(nil)

    /// The vault's catalog for tier-2 reads the ledger cannot place, read at most every 10 minutes.
    private func cachedCatalog() async throws -> [ChunkID: [VaultLocation]] {
        if let c = catalogCache.withLock({ $0 }), Date().timeIntervalSince(c.at) < 600 { return c.catalog }
        let fresh = try await vaultCatalog()
        catalogCache.withLock { $0 = (Date(), fresh) }
        return fresh
    }

    public static func fetch(_ id: ChunkID, at loc: VaultLocation, vault: VaultClient, sealer: ObjectSealer) async throws -> PreparedBlob? {
        guard let range = VaultPack.entryRange(loc) else {
            throw ForwarderError(.tampered, "the relay's record of where blob \(id.shortHex) lies in vault pack \(loc.pack) is damaged (offset \(loc.offset), length \(loc.length)); run `outpost relay verify-vault --repair`")
        }
        guard let sealed = try await vault.get(loc.pack, range: range) else { return nil }
        return try VaultPack.openEntry(sealed, key: loc.pack, id: id, kind: loc.kind, sealer: sealer, decompressor: ZstdDecompressor())
    }

    /// A blob stored by vault objects version 1 (one object per blob under `c/`).
    static func fetchLegacy(_ id: ChunkID, vault: VaultClient, sealer: ObjectSealer) async throws -> PreparedBlob? {
        let name = legacyKey(sealer.objectName(for: id))
        guard let sealed = try await vault.get(name) else { return nil }
        let (kind, plain) = try sealer.open(sealed, name: name)
        var r = BinaryReader(plain, what: "vault object \(name)")
        guard let comp = BlobCompression(rawValue: try r.u8()) else { throw ForwarderError(.tampered, "vault object \(name) names an unknown compression") }
        let raw = Int(try r.u32())
        let stored = try r.raw(r.remaining)
        let blob = PreparedBlob(id: id, kind: VaultPack.blobKind(kind) ?? .data, compression: comp, stored: stored, rawLength: raw)
        _ = try stored.withUnsafeBytes { try PreparedBlob.open(stored: $0, id: id, compression: comp, rawLength: raw, decompressor: ZstdDecompressor(), what: "vault object \(name)") }
        return blob
    }

    /// Where the vault holds each blob, read from the indexes of every pack in the container (a rebuilt relay
    /// has no ledger). A blob can be in several packs (a repair sent it again): every copy is listed.
    public func vaultCatalog() async throws -> [ChunkID: [VaultLocation]] {
        var out: [ChunkID: [VaultLocation]] = [:]
        for entry in try await vault.list(prefix: "k/") {
            let size = entry.size
            guard size > 12, let trailer = try await vault.get(entry.key, range: (size - 8)..<size) else { continue }
            do {
                let range = try VaultPack.indexRange(trailer: trailer, packSize: size, key: entry.key)
                guard let sealed = try await vault.get(entry.key, range: range) else { continue }
                for e in try VaultPack.readIndex(sealed: sealed, key: entry.key, packSize: size, sealer: sealer) {
                    out[e.id, default: []].append(e.location)
                }
            } catch let e as ForwarderError where e.code == .tampered {
                // A damaged pack (a repair sent its blobs again elsewhere): what is needed and only there is
                // reported by name when the point that needs it is rebuilt.
                logger.warning("vault pack skipped", metadata: ["pack": "\(entry.key)", "error": "\(e.message)"])
            }
        }
        return out
    }

    /// The recovery point ids the vault holds (from the `p/` entries).
    public func vaultPoints() async throws -> [ChunkID] {
        var out: [ChunkID] = []
        for entry in try await vault.list(prefix: "p/") {
            guard let sealed = try await vault.get(entry.key) else { continue }
            let (_, plain) = try sealer.open(sealed, name: entry.key)
            if let id = ChunkID(hex: String(decoding: plain, as: UTF8.self)) { out.append(id) }
        }
        return out
    }
}
