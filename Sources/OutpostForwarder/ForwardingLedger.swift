import Foundation
import GRDB
import OutpostCore
import OutpostStore

/// The forwarder's bookkeeping in the store's index (schema v3, v4): blobs the vault acknowledged, with where
/// each is in the vault, and per recovery point its state (pending, forwarding, forwarded, failed with the reason).
public struct ForwardingLedger: Sendable {
    let index: StoreIndex

    public init(store: Store) { index = store.index }

    /// The ledger's tables in the store's index (docs/format.md §9): registered by the binary before it opens a
    /// store (`StoreIndex.registerMigrations`).
    public static let migrations = [
        // The forwarder's state: which blobs the vault has acknowledged, and each recovery point's progress.
        IndexMigration(
            "v3",
            sql: """
                CREATE TABLE vault_blobs (
                    blob_id BLOB PRIMARY KEY,
                    sent_at REAL NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE forwarding (
                    point_id BLOB PRIMARY KEY,
                    state TEXT NOT NULL,
                    reason TEXT,
                    bytes INTEGER NOT NULL DEFAULT 0,
                    updated_at REAL NOT NULL
                );
                """),
        // Vault objects version 2: blobs travel in packs, so each acknowledged blob records its pack and byte
        // range there (tier-2 restore reads just that range). Rows from version 1 (one object per blob) keep a
        // NULL pack and are still read from their own object.
        IndexMigration(
            "v4",
            sql: """
                ALTER TABLE vault_blobs ADD COLUMN pack TEXT;
                ALTER TABLE vault_blobs ADD COLUMN pack_offset INTEGER;
                ALTER TABLE vault_blobs ADD COLUMN pack_length INTEGER;
                ALTER TABLE vault_blobs ADD COLUMN pack_kind INTEGER;
                CREATE INDEX vault_blobs_pack ON vault_blobs (pack);
                """),
        // Vault retention (docs/vault.md §19): the size of each pack put, so that the space the vault holds and
        // the space its retention frees are known without asking the vault.
        IndexMigration(
            "v7",
            sql: """
                CREATE TABLE vault_packs (
                    pack TEXT PRIMARY KEY,
                    size INTEGER NOT NULL,
                    sent_at REAL NOT NULL
                ) WITHOUT ROWID;
                """),
    ]

    /// `expired`: the vault's retention deleted the point there (it stays on the relay until the relay's own rules
    /// let it go, and is never forwarded again).
    public enum State: String, Sendable, Codable { case pending, forwarding, forwarded, failed, expired }

    public struct Entry: Sendable, Codable {
        public var point: String
        public var machine: String
        public var finishedAt: Date
        public var state: State
        public var reason: String?
        public var bytes: Int64
    }

    /// Of `ids`, those the vault has not acknowledged.
    public func unsent(_ ids: [BlobID]) throws -> [BlobID] {
        var sent = Set<BlobID>()
        try index.read("looking up forwarded blobs") { db in
            var start = 0
            while start < ids.count {
                let slice = ids[start..<min(ids.count, start + 500)]
                let marks = Array(repeating: "?", count: slice.count).joined(separator: ",")
                for d in try Data.fetchAll(
                    db, sql: "SELECT blob_id FROM vault_blobs WHERE blob_id IN (\(marks))", arguments: StatementArguments(slice.map { $0.data }))
                {
                    if let id = BlobID(bytes: d) { sent.insert(id) }
                }
                start += 500
            }
        }
        return ids.filter { !sent.contains($0) }
    }

    /// Records blobs the vault acknowledged, with where each one lives there. With `keepExisting`, a blob the
    /// ledger already places keeps its place (a rebuild recording blobs it did not fetch itself).
    public func markSent(_ placed: [(BlobID, VaultLocation)], keepExisting: Bool = false, packSize: Int? = nil, now: Date = Date()) throws {
        guard !placed.isEmpty else { return }
        try index.write("recording forwarded blobs") { db in
            if let packSize, let pack = placed.first?.1.pack {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO vault_packs (pack, size, sent_at) VALUES (?, ?, ?)",
                    arguments: [pack, packSize, now.timeIntervalSince1970])
            }
            let st = try db.cachedStatement(
                sql: keepExisting
                    ? """
                    INSERT OR IGNORE INTO vault_blobs (blob_id, sent_at, pack, pack_offset, pack_length, pack_kind) VALUES (?, ?, ?, ?, ?, ?)
                    """
                    : """
                    INSERT INTO vault_blobs (blob_id, sent_at, pack, pack_offset, pack_length, pack_kind) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT(blob_id) DO UPDATE SET sent_at = excluded.sent_at, pack = excluded.pack,
                        pack_offset = excluded.pack_offset, pack_length = excluded.pack_length, pack_kind = excluded.pack_kind
                    """)
            for (id, l) in placed { try st.execute(arguments: [id.data, now.timeIntervalSince1970, l.pack, l.offset, l.length, Int(l.kind)]) }
        }
    }

    /// Records blobs the vault holds as version 1 objects of their own (found by a rebuild).
    public func markSentLegacy(_ ids: [BlobID], now: Date = Date()) throws {
        guard !ids.isEmpty else { return }
        try index.write("recording forwarded blobs") { db in
            let st = try db.cachedStatement(sql: "INSERT OR IGNORE INTO vault_blobs (blob_id, sent_at) VALUES (?, ?)")
            for id in ids { try st.execute(arguments: [id.data, now.timeIntervalSince1970]) }
        }
    }

    /// Forgets that the vault holds these blobs (a repair found them damaged or missing): they are sent again.
    public func unmark(_ ids: [BlobID]) throws {
        guard !ids.isEmpty else { return }
        try index.write("forgetting damaged vault blobs") { db in
            let st = try db.cachedStatement(sql: "DELETE FROM vault_blobs WHERE blob_id = ?")
            for id in ids { try st.execute(arguments: [id.data]) }
        }
    }

    /// Where the vault holds a blob: `.acknowledged(location)` (nil location for a version 1 object of its
    /// own), or nil when the vault has not acknowledged it.
    public func location(of id: BlobID) throws -> Placement? {
        try index.read("looking up a forwarded blob") { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT pack, pack_offset, pack_length, pack_kind FROM vault_blobs WHERE blob_id = ?", arguments: [id.data])
            else {
                return nil
            }
            return Placement(Self.location(row))
        }
    }

    /// Where the vault holds an acknowledged blob; `location` is nil for a version 1 object of its own.
    public struct Placement: Sendable, Equatable {
        public let location: VaultLocation?
        public init(_ location: VaultLocation?) { self.location = location }
    }

    private static func location(_ row: Row) -> VaultLocation? {
        guard let pack: String = row["pack"] else { return nil }
        return VaultLocation(
            pack: pack, offset: row["pack_offset"], length: row["pack_length"], kind: UInt8(truncatingIfNeeded: row["pack_kind"] as Int? ?? 1))
    }

    /// Every blob the vault has acknowledged, with its location (nil for version 1 objects), pack by pack.
    public func sent() throws -> [(BlobID, VaultLocation?)] {
        try index.read("listing forwarded blobs") { db in
            try Row.fetchAll(db, sql: "SELECT blob_id, pack, pack_offset, pack_length, pack_kind FROM vault_blobs ORDER BY pack, pack_offset")
                .compactMap { row in
                    guard let id = BlobID(bytes: row["blob_id"] as Data) else { return nil }
                    return (id, Self.location(row))
                }
        }
    }

    /// A vault pack as the ledger knows it: its blobs (with their sealed lengths) and its size (nil for a pack put
    /// before the ledger recorded sizes: then at least the end of its last entry).
    public struct VaultPackRecord: Sendable {
        public var key: String
        public var blobs: [(id: BlobID, length: Int)]
        public var size: Int?
        public var estimatedSize: Int
    }

    /// Every pack the ledger places a blob in.
    public func packs() throws -> [VaultPackRecord] {
        try index.read("listing vault packs") { db in
            var sizes: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT pack, size FROM vault_packs") { sizes[row["pack"]] = row["size"] }
            var out: [String: VaultPackRecord] = [:]
            let rows = try Row.fetchCursor(
                db, sql: "SELECT blob_id, pack, pack_offset, pack_length FROM vault_blobs WHERE pack IS NOT NULL ORDER BY pack, pack_offset")
            while let row = try rows.next() {
                guard let id = BlobID(bytes: row["blob_id"] as Data) else { continue }
                let key: String = row["pack"]
                let end = (row["pack_offset"] as Int? ?? 0) + (row["pack_length"] as Int? ?? 0)
                var p = out[key] ?? VaultPackRecord(key: key, blobs: [], size: sizes[key], estimatedSize: sizes[key] ?? 0)
                p.blobs.append((id, row["pack_length"] as Int? ?? 0))
                if p.size == nil { p.estimatedSize = max(p.estimatedSize, end) }
                out[key] = p
            }
            return out.values.sorted { $0.key < $1.key }
        }
    }

    /// Forgets a pack the vault's retention deleted: the blobs the ledger placed there (they are sent again if a
    /// point needs them later) and its size.
    public func forgetPack(_ key: String) throws {
        try index.write("forgetting a deleted vault pack") { db in
            try db.execute(sql: "DELETE FROM vault_blobs WHERE pack = ?", arguments: [key])
            try db.execute(sql: "DELETE FROM vault_packs WHERE pack = ?", arguments: [key])
        }
    }

    /// The points whose entries the vault's retention deleted while they were still on the relay.
    public func expiredPoints() throws -> Set<BlobID> {
        try index.read("listing expired recovery points") { db in
            Set(try Data.fetchAll(db, sql: "SELECT point_id FROM forwarding WHERE state = 'expired'").compactMap { BlobID(bytes: $0) })
        }
    }

    /// How much the vault holds for this relay, as the ledger knows it.
    public func summary() throws -> (blobs: Int, packs: Int, legacyObjects: Int) {
        try index.read("summing up forwarded blobs") { db in
            let blobs = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM vault_blobs") ?? 0
            let packs = try Int.fetchOne(db, sql: "SELECT COUNT(DISTINCT pack) FROM vault_blobs WHERE pack IS NOT NULL") ?? 0
            let legacy = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM vault_blobs WHERE pack IS NULL") ?? 0
            return (blobs, packs, legacy)
        }
    }

    /// Puts every forwarded recovery point back to pending, so that the next run re-sends whatever the vault
    /// lacks (after `unmark`).
    public func reopenForwarded(now: Date = Date()) throws {
        try index.write("reopening forwarded recovery points") { db in
            try db.execute(
                sql: "UPDATE forwarding SET state = 'pending', reason = NULL, updated_at = ? WHERE state = 'forwarded'",
                arguments: [now.timeIntervalSince1970])
        }
    }

    public func set(_ point: BlobID, _ state: State, reason: String? = nil, bytes: Int64 = 0, now: Date = Date()) throws {
        try index.write("recording forwarding state") { db in
            try db.execute(
                sql: """
                    INSERT INTO forwarding (point_id, state, reason, bytes, updated_at) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT(point_id) DO UPDATE SET state = excluded.state, reason = excluded.reason,
                        bytes = forwarding.bytes + excluded.bytes, updated_at = excluded.updated_at
                    """, arguments: [point.data, state.rawValue, reason, bytes, now.timeIntervalSince1970])
        }
    }

    /// Every recovery point with its forwarding state, oldest first (points never tried are pending).
    /// Stored bytes of the blobs the vault has not acknowledged: what forwarding still has to send, and more (blobs
    /// of backups under way, garbage a gc has not collected yet). One scan of the index (`/metrics`).
    public func unsentBytes() throws -> Int64 {
        try index.read("measuring what the vault lacks") { db in
            try Int64.fetchOne(
                db,
                sql: "SELECT COALESCE(SUM(stored_length), 0) FROM blobs WHERE NOT EXISTS (SELECT 1 FROM vault_blobs v WHERE v.blob_id = blobs.id)")
                ?? 0
        }
    }

    public func entries() throws -> [Entry] {
        let points = try index.points()
        let states = try index.read("listing forwarding state") { db in
            try Row.fetchAll(db, sql: "SELECT point_id, state, reason, bytes FROM forwarding").reduce(into: [BlobID: (State, String?, Int64)]()) {
                acc, row in
                if let id = BlobID(bytes: row["point_id"] as Data) {
                    acc[id] = (State(rawValue: row["state"]) ?? .pending, row["reason"], row["bytes"])
                }
            }
        }
        return points.map { p in
            let s = states[p.id]
            return Entry(
                point: p.id.hex, machine: p.point.machine, finishedAt: p.point.finishedAt, state: s?.0 ?? .pending, reason: s?.1, bytes: s?.2 ?? 0)
        }
    }
}

/// Where a forwarded blob lives in the vault: a byte range of one pack object, and the entry's kind (bound into
/// its authentication) (docs/vault.md §9.3).
public struct VaultLocation: Sendable, Equatable {
    public let pack: String
    public let offset: Int
    public let length: Int
    public let kind: UInt8
    public init(pack: String, offset: Int, length: Int, kind: UInt8) {
        self.pack = pack; self.offset = offset; self.length = length; self.kind = kind
    }
}
