import Foundation
import GRDB
import OutpostCore

/// Where a blob lives, as the index records it.
public struct BlobLocation: Sendable, Equatable {
    public var packID: Int64
    public var packName: String
    public var kind: BlobKind
    public var compression: BlobCompression
    public var offset: Int
    public var storedLength: Int
    public var rawLength: Int
}

/// A sealed pack as the index records it.
public struct PackRecord: Sendable, Equatable {
    public var id: Int64
    public var name: String
    public var size: Int
    public var blobCount: Int
    public var createdAt: Date = .distantPast
}

/// The store's SQLite index (GRDB `DatabasePool`, WAL): packs, blobs → pack locations, machines and the
/// recovery point catalog. Schema versions are GRDB migrations ("v1", …), listed in docs/format.md; the store's
/// own are "v1" and "v5", other modules add theirs (IndexMigration.swift).
public final class StoreIndex: Sendable {
    let pool: DatabasePool
    package let path: String

    /// Opens (and, with `create`, migrates) the index. Refuses an index whose schema is newer than this code.
    init(path: String, create: Bool) throws {
        self.path = path
        var config = Configuration()
        config.busyMode = .timeout(60)
        config.prepareDatabase { db in
            // Durable commits: a recovery point that was reported committed survives a power cut.
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA cache_size = -65536")
            // Pages read through a memory map instead of a read() each: a connection drops its page cache
            // whenever another one wrote, which on a relay is after nearly every request.
            try db.execute(sql: "PRAGMA mmap_size = 268435456")
        }
        do {
            pool = try DatabasePool(path: path, configuration: config)
            let migrator = Self.migrator
            let superseded = try pool.read { try migrator.hasBeenSuperseded($0) }
            if superseded {
                throw StoreError(.unsupportedVersion, "the store index \(path) has a schema newer than this outpost knows: upgrade outpost")
            }
            try migrator.migrate(pool)
        } catch let e as StoreError {
            throw e
        } catch let e as DatabaseError where e.resultCode == .SQLITE_FULL {
            throw StoreError(.diskFull, "the disk holding the index \(path) is full; free space there and try again")
        } catch {
            throw StoreError(
                .corrupt, "the store index \(path) cannot be opened: \(error); if it is damaged, move it aside and run `outpost store rebuild-index`")
        }
    }

    /// Runs `body` in a write transaction, mapping SQLite errors to store errors. (For the modules that keep
    /// tables of their own in the index, too.)
    package func write<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.write(body)
        } catch let e as StoreError {
            throw e
        } catch let e as DatabaseError where e.resultCode == .SQLITE_FULL {
            throw StoreError(
                .diskFull,
                "the disk holding the index \(path) is full while \(what); free space there and run the job again — nothing committed is lost")
        } catch {
            throw StoreError(.io, "the store index \(path) failed while \(what): \(error)")
        }
    }

    package func read<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.read(body)
        } catch let e as StoreError {
            throw e
        } catch {
            throw StoreError(.io, "the store index \(path) failed while \(what): \(error)")
        }
    }

    /// A read outside a transaction: each statement sees the index as of its own start. For reads of one
    /// statement (or of statements whose results need not agree), which a relay runs for nearly every request:
    /// a transaction's BEGIN and COMMIT cost more than the lookup.
    package func readStatements<T>(_ what: String, _ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.unsafeRead(body)
        } catch let e as StoreError {
            throw e
        } catch {
            throw StoreError(.io, "the store index \(path) failed while \(what): \(error)")
        }
    }

    // MARK: Packs and blobs

    /// Records a sealed pack and its blobs in one transaction. Blobs another writer indexed meanwhile keep
    /// their first location (this pack's copy becomes garbage for gc).
    func addPack(name: String, size: Int, entries: [PackEntry]) throws {
        try write("recording pack \(name)") { db in
            _ = try Self.insertPack(db, name: name, size: size, entries: entries)
        }
    }

    /// Inserts a sealed pack and its blobs, all touched now (online gc, docs/format.md §13); a blob indexed
    /// elsewhere keeps its first location and is touched there. Returns the pack's id.
    @discardableResult
    static func insertPack(_ db: Database, name: String, size: Int, entries: [PackEntry], now: Date = Date()) throws -> Int64 {
        try db.execute(
            sql: "INSERT INTO packs (name, size, blob_count, created_at) VALUES (?, ?, ?, ?)",
            arguments: [name, size, entries.count, now.timeIntervalSince1970])
        let packID = db.lastInsertedRowID
        let st = try db.cachedStatement(
            sql: """
                INSERT INTO blobs (id, kind, pack_id, offset, stored_length, raw_length, compression, touched_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET touched_at = max(touched_at, excluded.touched_at)
                """)
        for e in entries {
            try st.execute(arguments: [
                e.id.data, Int(e.kind.rawValue), packID, e.offset, e.storedLength, e.rawLength, Int(e.compression.rawValue),
                now.timeIntervalSince1970,
            ])
        }
        return packID
    }

    public func location(of id: BlobID) throws -> BlobLocation? {
        try read("looking up blob \(id.shortHex)") { db in
            try Row.fetchOne(try Self.locationStatement(db), arguments: [id.data]).map(Self.location)
        }
    }

    /// Prepared once per connection: a restore looks up every blob, and compiling the query each time cost more
    /// than running it.
    static func locationStatement(_ db: Database) throws -> Statement {
        try db.cachedStatement(
            sql: """
                SELECT b.kind, b.compression, b.offset, b.stored_length, b.raw_length, p.id AS pid, p.name
                FROM blobs b JOIN packs p ON p.id = b.pack_id WHERE b.id = ?
                """)
    }

    /// Locations of many blobs in one read (a restore batch): absent ones are left out.
    public func locations(of ids: [BlobID]) throws -> [BlobID: BlobLocation] {
        try read("looking up \(ids.count) blobs") { db in
            let st = try Self.locationStatement(db)
            var out: [BlobID: BlobLocation] = [:]
            for id in ids where out[id] == nil {
                if let row = try Row.fetchOne(st, arguments: [id.data]) { out[id] = Self.location(row) }
            }
            return out
        }
    }

    /// A row of `locationStatement`, read by column position (by name, GRDB lowercases each name per row).
    static func location(_ row: Row) -> BlobLocation {
        BlobLocation(
            packID: row[5], packName: row[6],
            kind: BlobKind(rawValue: UInt8(row[0] as Int)) ?? .data,
            compression: BlobCompression(rawValue: UInt8(row[1] as Int)) ?? .none,
            offset: row[2], storedLength: row[3], rawLength: row[4])
    }

    public func packs() throws -> [PackRecord] {
        try read("listing packs") { db in
            try Row.fetchAll(db, sql: "SELECT id, name, size, blob_count, created_at FROM packs ORDER BY id").map {
                PackRecord(
                    id: $0["id"], name: $0["name"], size: $0["size"], blobCount: $0["blob_count"],
                    createdAt: Date(timeIntervalSince1970: $0["created_at"]))
            }
        }
    }

    /// Every blob of one pack, by offset.
    public func entries(ofPack packID: Int64) throws -> [PackEntry] {
        try read("listing the blobs of a pack") { db in
            try Row.fetchAll(
                db, sql: "SELECT id, kind, compression, offset, stored_length, raw_length FROM blobs WHERE pack_id = ? ORDER BY offset",
                arguments: [packID]
            ).map(Self.entry)
        }
    }

    static func entry(_ row: Row) -> PackEntry {
        PackEntry(
            id: BlobID(bytes: row["id"] as Data) ?? BlobID(w0: 0, w1: 0, w2: 0, w3: 0),
            kind: BlobKind(rawValue: UInt8(row["kind"] as Int)) ?? .data,
            compression: BlobCompression(rawValue: UInt8(row["compression"] as Int)) ?? .none,
            offset: row["offset"], storedLength: row["stored_length"], rawLength: row["raw_length"])
    }

    public struct Totals: Sendable {
        public var packs = 0, blobs = 0, packBytes = 0, rawBytes = 0, storedBytes = 0
    }

    public func totals() throws -> Totals {
        try read("counting") { db in
            var t = Totals()
            if let r = try Row.fetchOne(db, sql: "SELECT COUNT(*) AS n, COALESCE(SUM(size),0) AS s FROM packs") {
                t.packs = r["n"]; t.packBytes = r["s"]
            }
            if let r = try Row.fetchOne(
                db, sql: "SELECT COUNT(*) AS n, COALESCE(SUM(raw_length),0) AS r, COALESCE(SUM(stored_length),0) AS s FROM blobs")
            {
                t.blobs = r["n"]; t.rawBytes = r["r"]; t.storedBytes = r["s"]
            }
            return t
        }
    }

    // MARK: Recovery points

    func commitPoint(id: BlobID, point: RecoveryPoint) throws {
        try write("committing recovery point \(id.shortHex)") { db in
            try Self.insertPoint(db, id: id, point: point)
        }
    }

    static func insertPoint(_ db: Database, id: BlobID, point: RecoveryPoint) throws {
        try db.execute(
            sql: "INSERT OR IGNORE INTO machines (name, created_at) VALUES (?, ?)",
            arguments: [point.machine, Date().timeIntervalSince1970])
        let machineID = try Int64.fetchOne(db, sql: "SELECT id FROM machines WHERE name = ?", arguments: [point.machine])!
        try db.execute(
            sql: """
                INSERT OR IGNORE INTO recovery_points (id, machine_id, started_at, finished_at, root_tree, record)
                VALUES (?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                id.data, machineID, point.startedAt.timeIntervalSince1970, point.finishedAt.timeIntervalSince1970,
                point.root?.data ?? Data(), Data(point.encoded()),
            ])
    }

    /// Recovery points, oldest first, optionally of one machine.
    public func points(machine: String? = nil) throws -> [RecoveryPointInfo] {
        try read("listing recovery points") { db in
            let rows: [Row]
            if let machine {
                rows = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT r.id, r.record FROM recovery_points r JOIN machines m ON m.id = r.machine_id
                        WHERE m.name = ? ORDER BY r.finished_at, r.id
                        """, arguments: [machine])
            } else {
                rows = try Row.fetchAll(db, sql: "SELECT id, record FROM recovery_points ORDER BY finished_at, id")
            }
            return try rows.map { row in
                let id = BlobID(bytes: row["id"] as Data) ?? BlobID(w0: 0, w1: 0, w2: 0, w3: 0)
                let record = try RecoveryPoint.decode(Array(row["record"] as Data), what: "recovery point \(id.shortHex)")
                return RecoveryPointInfo(id: id, point: record)
            }
        }
    }

    public func machines() throws -> [String] {
        try read("listing machines") { db in try String.fetchAll(db, sql: "SELECT name FROM machines ORDER BY name") }
    }

    /// Deletes a point from the catalog; the index's trigger records it in `forgotten_points`, so that its data
    /// stays for gc's grace period (a push that started before may still build on it, docs/format.md §13).
    func deletePoint(_ id: BlobID) throws {
        try write("deleting recovery point \(id.shortHex)") { db in
            try db.execute(sql: "DELETE FROM recovery_points WHERE id = ?", arguments: [id.data])
        }
    }
}

extension BlobID {
    package var data: Data { withUnsafeBytes { Data($0) } }
}

extension StoreIndex {
    /// Replaces the whole index with what the packs hold (rebuild-index).
    func replaceAll(packs: [(name: String, size: Int, entries: [PackEntry])], points: [(BlobID, RecoveryPoint)]) throws {
        try write("rebuilding the index") { db in
            // Machines (and the relay's credentials and ownership records) are kept: only what the packs
            // describe is replaced.
            try db.execute(sql: "DELETE FROM recovery_points; DELETE FROM blobs; DELETE FROM packs;")
            for p in packs { try Self.insertPack(db, name: p.name, size: p.size, entries: p.entries) }
            for (id, point) in points { try Self.insertPoint(db, id: id, point: point) }
        }
    }
}
