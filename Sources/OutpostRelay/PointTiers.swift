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
}
