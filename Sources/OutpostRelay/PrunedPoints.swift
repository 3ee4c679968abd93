import Foundation
import GRDB
import OutpostCore
import OutpostStore

/// Recovery points pruned from the relay that the vault still holds (table `pruned_points`, schema v5): listed
/// with the tier `vault`, restored from the vault, expired there by the vault's retention. Their trees stay in
/// the relay's store (gc keeps them, without their chunks: `roots`).
public struct PrunedPoints: Sendable {
    let index: StoreIndex

    public init(store: Store) { index = store.index }

    public struct Entry: Sendable {
        public var machine: String
        public var info: RecoveryPointInfo
        public var prunedAt: Date
    }

    /// Every such point (of one machine), oldest first.
    public func list(machine: String? = nil) throws -> [Entry] {
        try index.read("listing pruned recovery points") { db in
            let rows =
                try machine.map {
                    try Row.fetchAll(
                        db, sql: "SELECT point_id, machine, record, pruned_at FROM pruned_points WHERE machine = ? ORDER BY finished_at, point_id",
                        arguments: [$0])
                }
                ?? Row.fetchAll(db, sql: "SELECT point_id, machine, record, pruned_at FROM pruned_points ORDER BY finished_at, point_id")
            return try rows.compactMap { row in
                guard let id = BlobID(bytes: row["point_id"] as Data) else { return nil }
                let point = try RecoveryPoint.decode(Array(row["record"] as Data), what: "pruned recovery point \(id.shortHex)")
                return Entry(
                    machine: row["machine"], info: RecoveryPointInfo(id: id, point: point),
                    prunedAt: Date(timeIntervalSince1970: row["pruned_at"]))
            }
        }
    }

    /// Their root trees: gc keeps these trees (not the chunks) for the catalog of what the vault holds.
    public func roots() throws -> [BlobID] {
        try list().compactMap { $0.info.point.root }
    }

    /// Forgets points the vault no longer holds (its retention deleted them there).
    public func remove(_ ids: [BlobID]) throws {
        guard !ids.isEmpty else { return }
        try index.write("forgetting expired recovery points") { db in
            for id in ids { try db.execute(sql: "DELETE FROM pruned_points WHERE point_id = ?", arguments: [id.data]) }
        }
    }
}
