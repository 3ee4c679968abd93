import Foundation
import Logging
import OutpostCore
import OutpostCrypto
import OutpostStore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The relay's MARS-style agent: sends every recovery point off-site, encrypted.
///
/// For each recovery point not yet forwarded: every blob it needs that the vault has not acknowledged is
/// sealed (AES-256-GCM over the blob as stored, compressed) under an HMAC name and put (put-if-absent, so a
/// retry after an interruption never duplicates), then the sealed point record. The ledger records each
/// acknowledged blob as it goes: an interrupted run resumes without re-uploading what the vault acknowledged.
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

    /// Vault object kinds (the sealed object's kind byte).
    enum Kind: UInt8 { case data = 1, tree = 2, point = 3 }

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

    public func run() async throws -> Report {
        try checkStaging()
        var report = Report()
        let pending = try ledger.entries().filter { $0.state != .forwarded }
        report.backlog = pending.count
        var failed: [String] = []
        for entry in pending {
            guard let id = ChunkID(hex: entry.point) else { continue }
            do {
                try ledger.set(id, .forwarding)
                let (blobs, bytes) = try await forward(point: id)
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

    private func forward(point id: ChunkID) async throws -> (Int, Int64) {
        let info = try store.index.points().first { $0.id == id }
        guard let info, let root = info.point.root else { throw ForwarderError(.vault, "recovery point \(id.shortHex) vanished from the catalog") }
        // Every blob the point needs, trees first so that a partial vault copy is walkable.
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
        let todo = try ledger.unsent(needed)
        var sent = 0
        var bytes: Int64 = 0
        try await withThrowingTaskGroup(of: (ChunkID, Int).self) { group in
            var next = 0
            var acked: [ChunkID] = []
            func launch() {
                guard next < todo.count else { return }
                let blobID = todo[next]
                next += 1
                group.addTask { (blobID, try await self.upload(blobID)) }
            }
            for _ in 0..<concurrency { launch() }
            while let (blobID, size) = try await group.next() {
                acked.append(blobID)
                sent += 1
                bytes += Int64(size)
                if acked.count >= 64 { try ledger.markSent(acked); acked.removeAll() }
                launch()
            }
            try ledger.markSent(acked)
        }
        // The point's own record blob (so a rebuilt relay gets the same id), then its entry under p/.
        let recordBytes = try await upload(id)
        let name = "p/" + sealer.objectName(label: "point:" + id.hex)
        let sealed = try sealer.seal(Array(id.hex.utf8), name: name, kind: Kind.point.rawValue)
        try await throttle?.consume(sealed.count)
        _ = try await vault.put(name, sealed)
        try ledger.markSent([id])
        return (sent + 1, bytes + Int64(recordBytes + sealed.count))
    }

    /// Seals one blob as stored and puts it; returns the bytes sent.
    private func upload(_ id: ChunkID) async throws -> Int {
        guard let blob = try store.loadStored(id) else {
            throw ForwarderError(.vault, "blob \(id.shortHex) is missing from the relay's store; run `outpost relay check`")
        }
        // Never ship damage off-site: the blob must still hash to its id (the vault copy cannot be overwritten).
        do {
            _ = try decompressors.with { d in
                try blob.stored.withUnsafeBytes {
                    try PreparedBlob.open(stored: $0, id: id, compression: blob.compression, rawLength: blob.rawLength,
                                          decompressor: d, what: "blob \(id.shortHex) on the relay")
                }
            }
        } catch {
            throw ForwarderError(.tampered, "\(error); it was not forwarded — run `outpost relay check --read-data`")
        }
        var plain = BinaryWriter(capacity: blob.stored.count + 16)
        plain.u8(blob.compression.rawValue)
        plain.u32(UInt32(blob.rawLength))
        plain.raw(blob.stored)
        let name = Self.objectKey(sealer.objectName(for: id))
        let kind: Kind = switch blob.kind { case .tree: .tree; case .point: .point; case .data: .data }
        let sealed = try sealer.seal(plain.bytes, name: name, kind: kind.rawValue)
        try await throttle?.consume(sealed.count)
        _ = try await vault.put(name, sealed)
        sentBytes.add(Int64(sealed.count), ordering: .relaxed)
        return sealed.count
    }

    /// Reads back everything the vault acknowledged and checks it: present, authentic, and hashing to its id.
    /// Returns one line per damaged or missing object, naming it.
    public func verify() async throws -> (checked: Int, damage: [String]) {
        var damage: [String] = []
        var checked = 0
        for id in try ledger.sent() {
            checked += 1
            let name = Self.objectKey(sealer.objectName(for: id))
            do {
                if try await Self.fetch(id, vault: vault, sealer: sealer) == nil { damage.append("vault object \(name) (blob \(id.shortHex)) is missing") }
            } catch let e as ForwarderError where e.code == .unreachable || e.code == .credentials {
                throw e
            } catch {
                damage.append("\(error)")
            }
        }
        for entry in try ledger.entries() where entry.state == .forwarded {
            checked += 1
            let name = "p/" + sealer.objectName(label: "point:" + entry.point)
            do {
                guard let sealed = try await vault.get(name) else { damage.append("vault object \(name) (recovery point \(entry.point.prefix(8))) is missing"); continue }
                _ = try sealer.open(sealed, name: name)
            } catch let e as ForwarderError where e.code == .unreachable || e.code == .credentials {
                throw e
            } catch {
                damage.append("\(error)")
            }
        }
        return (checked, damage)
    }

    static func objectKey(_ name: String) -> String { "c/" + name.prefix(2) + "/" + name }

    /// A blob back from the vault (tier 2): unsealed, decompressed and checked against its id.
    public static func fetch(_ id: ChunkID, vault: VaultClient, sealer: ObjectSealer) async throws -> PreparedBlob? {
        let name = objectKey(sealer.objectName(for: id))
        guard let sealed = try await vault.get(name) else { return nil }
        let (kind, plain) = try sealer.open(sealed, name: name)
        var r = BinaryReader(plain, what: "vault object \(name)")
        guard let comp = BlobCompression(rawValue: try r.u8()) else { throw ForwarderError(.tampered, "vault object \(name) names an unknown compression") }
        let raw = Int(try r.u32())
        let stored = try r.raw(r.remaining)
        let blobKind: BlobKind = kind == Kind.tree.rawValue ? .tree : kind == Kind.point.rawValue ? .point : .data
        let blob = PreparedBlob(id: id, kind: blobKind, compression: comp, stored: stored, rawLength: raw)
        _ = try stored.withUnsafeBytes { try PreparedBlob.open(stored: $0, id: id, compression: comp, rawLength: raw, decompressor: ZstdDecompressor(), what: "vault object \(name)") }
        return blob
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
