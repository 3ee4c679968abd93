import Foundation
import GRDB
import OutpostCore

/// What online gc reads and writes in the index (docs/format.md §13): when blobs were last relied on, the points
/// forgotten within the grace period, and the counter of gc runs that deleted something.
extension StoreIndex {
    /// A blob touched less than this long ago is not touched again: most "which are missing?" answers then stay
    /// reads. A gc's grace must exceed it (`GarbageCollector.minimumOnlineGrace`).
    public static let touchRefresh: TimeInterval = 600

    /// Of `ids`, those the index holds, each marked relied on now. A blob whose touch is older than `refresh` is
    /// touched in a write that also says whether its row is still there (`UPDATE … RETURNING`): SQLite serialises
    /// it with gc's deleting transaction, so a blob is either touched before gc decides (and kept) or reported
    /// absent (and sent again) — never answered present and deleted.
    func touch(_ ids: [BlobID], now: Date = Date(), refresh: TimeInterval = StoreIndex.touchRefresh) throws -> Set<BlobID> {
        if ids.isEmpty { return [] }
        let looked = try lookUp(ids, freshSince: now.timeIntervalSince1970 - refresh)
        var found = looked.fresh
        let stale = looked.stale
        if stale.isEmpty { return found }
        try write("marking \(stale.count) blobs as relied on") { db in
            try Self.forEachRow(db, stale, leading: [now.timeIntervalSince1970]) {
                "UPDATE blobs SET touched_at = ? WHERE id IN (\($0)) RETURNING id"
            } each: { row in
                if let id = try Self.blobID(row, 0) { found.insert(id) }
            }
        }
        return found
    }

    /// The subset of `ids` the index holds, untouched (a reader, or a check under a tree just touched: gc keeps
    /// all a touched tree reaches).
    func present(_ ids: [BlobID]) throws -> Set<BlobID> {
        let (found, stale) = try lookUp(ids, freshSince: -.infinity)
        return found.union(stale)
    }

    /// The indexed ones of `ids`: those touched at or after `freshSince`, and the others.
    private func lookUp(_ ids: [BlobID], freshSince fresh: Double) throws -> (fresh: Set<BlobID>, stale: [BlobID]) {
        var found = Set<BlobID>()
        var stale: [BlobID] = []
        try readStatements("looking up blobs") { db in
            try Self.forEachRow(db, ids, sql: { "SELECT id, touched_at FROM blobs WHERE id IN (\($0))" }) { row in
                guard let id = try Self.blobID(row, 0) else { return }
                if (row[1] as Double) >= fresh { found.insert(id) } else { stale.append(id) }
            }
        }
        return (found, stale)
    }

    /// The lengths of the `IN (…)` lists that `forEachRow` prepares statements for.
    static let listLengths = [1, 4, 16, 64, 128, 256, 500]
    private static let listMarks = listLengths.map { marks($0) }

    /// Runs the query `sql(marks)` over `ids`, in slices of at most 500, and hands each result row to `each`.
    /// Each slice's list is padded (with its last id; a repeated id in `IN` changes no result) to one of a few
    /// lengths, so that each query is compiled once per connection and then reused: compiling it for every
    /// request cost a relay more than running it. `leading` are the arguments before the list.
    package static func forEachRow(
        _ db: Database, _ ids: [BlobID], leading: [any DatabaseValueConvertible] = [], sql: (String) -> String,
        each: (Row) throws -> Void
    ) throws {
        var start = 0
        while start < ids.count {
            let n = min(listLengths.last!, ids.count - start)
            let k = listLengths.firstIndex { $0 >= n }!
            let st = try db.cachedStatement(sql: sql(listMarks[k]))
            var values: [(any DatabaseValueConvertible)?] = leading
            values.reserveCapacity(leading.count + listLengths[k])
            for i in 0..<listLengths[k] { values.append(ids[start + min(i, n - 1)].data) }
            st.setUncheckedArguments(StatementArguments(values))
            let rows = try Row.fetchCursor(st)
            while let row = try rows.next() { try each(row) }
            start += n
        }
    }

    /// The blob id in column `index` of `row`, read without copying the bytes.
    package static func blobID(_ row: Row, _ index: Int) throws -> BlobID? {
        try row.withUnsafeData(atIndex: index) { $0.flatMap { BlobID(bytes: $0) } }
    }

    static func slices<T>(_ items: [T], of size: Int = 500) -> [ArraySlice<T>] {
        stride(from: 0, to: items.count, by: size).map { items[$0..<min(items.count, $0 + size)] }
    }

    static func marks(_ n: Int) -> String { Array(repeating: "?", count: n).joined(separator: ",") }

    /// One row per blob: enough for gc and check without touching the packs.
    public struct BlobRow: Sendable {
        public var id: BlobID
        public var kind: BlobKind
        public var packID: Int64
        public var storedLength: Int
        /// When the blob was last stored or relied on (Unix seconds).
        public var touchedAt: Double = 0
    }

    public func allBlobs() throws -> [BlobRow] {
        try read("listing every blob") { db in
            var out: [BlobRow] = []
            let cursor = try Row.fetchCursor(db, sql: "SELECT id, kind, pack_id, stored_length, touched_at FROM blobs")
            while let row = try cursor.next() {
                guard let id = BlobID(bytes: row[0] as Data) else { continue }
                out.append(
                    BlobRow(
                        id: id, kind: BlobKind(rawValue: UInt8(row[1] as Int)) ?? .data,
                        packID: row[2], storedLength: row[3], touchedAt: row[4]))
            }
            return out
        }
    }

    /// Trees touched at or after `cutoff`: pushes in flight build on them, so gc keeps all they reach.
    static func youngTrees(_ db: Database, since cutoff: Date) throws -> [BlobID] {
        try Data.fetchAll(
            db, sql: "SELECT id FROM blobs WHERE kind = 1 AND touched_at >= ?", arguments: [cutoff.timeIntervalSince1970]
        ).compactMap { BlobID(bytes: $0) }
    }

    /// Root trees of points forgotten at or after `cutoff`.
    func forgottenRoots(since cutoff: Date) throws -> [BlobID] {
        try read("listing forgotten recovery points") { db in
            try Data.fetchAll(
                db, sql: "SELECT root_tree FROM forgotten_points WHERE forgotten_at >= ?", arguments: [cutoff.timeIntervalSince1970]
            ).compactMap { BlobID(bytes: $0) }
        }
    }

    /// How many gc runs have deleted blobs since the store was made.
    public func gcGeneration() throws -> Int64 {
        try read("reading the gc counter") { db in try Self.gcGeneration(db) }
    }

    static func gcGeneration(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT generation FROM gc_state WHERE id = 1") ?? 0
    }

    /// The location of a blob, read on `db` (inside gc's own transaction).
    static func location(_ db: Database, of id: BlobID) throws -> BlobLocation? {
        try Row.fetchOne(try locationStatement(db), arguments: [id.data]).map(location)
    }
}

extension StoreIndex {
    /// Moves the times gc reads back by `seconds`, as if that much time had passed with nothing touched: every
    /// blob's (or only `blobs`'), every pack's age and every forget. For tests of gc, which cannot wait a day.
    package func backdate(by seconds: TimeInterval, blobs: [BlobID]? = nil, packs: Bool = true, forgets: Bool = true) throws {
        try write("backdating") { db in
            if let blobs {
                for slice in Self.slices(blobs) {
                    let args: [(any DatabaseValueConvertible)?] = [seconds] + slice.map { $0.data }
                    try db.execute(
                        sql: "UPDATE blobs SET touched_at = touched_at - ? WHERE id IN (\(Self.marks(slice.count)))",
                        arguments: StatementArguments(args))
                }
            } else {
                try db.execute(sql: "UPDATE blobs SET touched_at = touched_at - ?", arguments: [seconds])
            }
            if packs { try db.execute(sql: "UPDATE packs SET created_at = created_at - ?", arguments: [seconds]) }
            if forgets { try db.execute(sql: "UPDATE forgotten_points SET forgotten_at = forgotten_at - ?", arguments: [seconds]) }
        }
    }
}
