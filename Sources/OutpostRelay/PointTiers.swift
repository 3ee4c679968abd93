import Foundation
import GRDB
import OutpostCore
import OutpostHTTP
import OutpostStore

/// A recovery point with where it is (`GET /v1/points`, `outpost relay points`).
public struct TieredPoint: Sendable {
    public var info: RecoveryPointInfo
    public var tier: RelayAPI.PointTier

    public init(info: RecoveryPointInfo, tier: RelayAPI.PointTier) {
        self.info = info
        self.tier = tier
    }
}

/// Where each recovery point of the relay is: in its catalog only (`relay`), in its catalog and forwarded
/// (`both`: the forwarding ledger says `forwarded`), or pruned from the relay after it was forwarded (`vault`:
/// `PrunedPoints`). Read straight from the index's tables, so the relay module needs nothing of the forwarder's
/// (the ledger's `forwarding` table, docs/format.md §9, is absent from a store no forwarder ever opened).
public struct PointTiers: Sendable {
    let store: Store
    /// Whether the relay is registered with a vault; without one every point is `relay`, and `pruned_points`
    /// (which only a relay with a vault fills) is not read.
    public let vault: Bool

    public init(store: Store, vault: Bool) {
        self.store = store
        self.vault = vault
    }

    /// The points of one machine (or all), oldest first (by finishedAt, then id), vault-only ones included.
    public func list(machine: String? = nil) throws -> [TieredPoint] {
        let listed = try store.index.points(machine: machine)
        guard vault else { return listed.map { TieredPoint(info: $0, tier: .relay) } }
        let (forwarded, hasPruned) = try store.index.read("listing where recovery points are") { db -> (Set<BlobID>, Bool) in
            var forwarded = Set<BlobID>()
            if try db.tableExists("forwarding") {
                for d in try Data.fetchAll(db, sql: "SELECT point_id FROM forwarding WHERE state = 'forwarded'") {
                    if let id = BlobID(bytes: d) { forwarded.insert(id) }
                }
            }
            return (forwarded, try db.tableExists("pruned_points"))
        }
        let pruned = try hasPruned ? PrunedPoints(store: store).list(machine: machine).map(\.info) : []
        let inCatalog = Set(listed.map(\.id))
        let all =
            listed.map { TieredPoint(info: $0, tier: forwarded.contains($0.id) ? .both : .relay) }
            + pruned.filter { !inCatalog.contains($0.id) }.map { TieredPoint(info: $0, tier: .vault) }
        return all.sorted {
            $0.info.point.finishedAt != $1.info.point.finishedAt
                ? $0.info.point.finishedAt < $1.info.point.finishedAt : $0.info.id.hex < $1.info.id.hex
        }
    }

    /// One point by its id, with its tier, or nil when the relay lists no such point. The console's pages of a
    /// point ask this, not `list()`: on a relay of 10,000 points, decoding every record cost each page 340–400 ms
    /// (debug build, docs/benchmarks.md).
    public func point(_ id: BlobID) throws -> TieredPoint? {
        try store.index.read("looking up recovery point \(id.shortHex)") { db -> TieredPoint? in
            if let record = try Data.fetchOne(db, sql: "SELECT record FROM recovery_points WHERE id = ?", arguments: [id.data]) {
                let info = RecoveryPointInfo(id: id, point: try RecoveryPoint.decode(Array(record), what: "recovery point \(id.shortHex)"))
                guard vault, try db.tableExists("forwarding") else { return TieredPoint(info: info, tier: .relay) }
                let state = try String.fetchOne(db, sql: "SELECT state FROM forwarding WHERE point_id = ?", arguments: [id.data])
                return TieredPoint(info: info, tier: state == "forwarded" ? .both : .relay)
            }
            guard vault, try db.tableExists("pruned_points"),
                let record = try Data.fetchOne(db, sql: "SELECT record FROM pruned_points WHERE point_id = ?", arguments: [id.data])
            else { return nil }
            let point = try RecoveryPoint.decode(Array(record), what: "pruned recovery point \(id.shortHex)")
            return TieredPoint(info: RecoveryPointInfo(id: id, point: point), tier: .vault)
        }
    }

    /// A page of a machine's points, newest first (the reverse of `list`'s order), and how many it has in all:
    /// only the page's records are read and decoded, so a machine with thousands of points shows as fast as one
    /// with a few (the console's machine page).
    public func newest(machine: String, limit: Int, offset: Int) throws -> (points: [TieredPoint], total: Int) {
        try store.index.read("listing recovery points of \(machine)") { db in
            let pruned = try vault && db.tableExists("pruned_points")
            // Points pruned from the relay but still in its catalog count once, as in `list`.
            let prunedOnly = """
                SELECT point_id AS id, record, finished_at, 1 AS pruned FROM pruned_points p
                WHERE machine = ? AND NOT EXISTS (SELECT 1 FROM recovery_points r WHERE r.id = p.point_id)
                """
            let catalog = """
                SELECT r.id, r.record, r.finished_at, 0 AS pruned FROM recovery_points r
                WHERE r.machine_id = (SELECT id FROM machines WHERE name = ?)
                """
            let source = pruned ? catalog + " UNION ALL " + prunedOnly : catalog
            let args: StatementArguments = pruned ? [machine, machine] : [machine]
            let total = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM (\(source))", arguments: args) ?? 0
            let rows = try Row.fetchAll(
                db, sql: "SELECT * FROM (\(source)) ORDER BY finished_at DESC, id DESC LIMIT ? OFFSET ?",
                arguments: args + [max(0, limit), max(0, offset)])
            let forwarded = try vault && db.tableExists("forwarding")
            var out: [TieredPoint] = []
            for row in rows {
                guard let id = BlobID(bytes: row["id"] as Data) else { continue }
                let info = RecoveryPointInfo(
                    id: id, point: try RecoveryPoint.decode(Array(row["record"] as Data), what: "recovery point \(id.shortHex)"))
                var tier = RelayAPI.PointTier.relay
                if (row["pruned"] as Int) == 1 {
                    tier = .vault
                } else if forwarded,
                    try String.fetchOne(db, sql: "SELECT state FROM forwarding WHERE point_id = ?", arguments: [id.data]) == "forwarded"
                {
                    tier = .both
                }
                out.append(TieredPoint(info: info, tier: tier))
            }
            return (out, total)
        }
    }
}
