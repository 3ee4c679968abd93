import Foundation
import GRDB
import OutpostCore
import OutpostStore

/// The relay's history retention (`[jobs] keep_days`, docs/alerts.md): jobs that ended and alerts that cleared
/// longer ago are deleted, so that the index does not grow by every job and alert forever. What is still read
/// or referred to stays whatever its age: each machine's newest good backup, the latest run of each kind of
/// job, a job an open alert names, the job of a recovery point the relay or the vault still holds, open alerts
/// and running or queued jobs. `relay serve` applies it at most once an hour (`AlertMonitor`), `relay prune` at
/// each run.
public struct HistoryRetention: Sendable {
    let store: Store

    public init(store: Store) { self.store = store }

    /// What one run deleted.
    public struct Report: Sendable, Codable, Equatable {
        public var keepDays: Int
        public var jobs: Int
        public var alerts: Int
    }

    /// Rows deleted per transaction: a backup committing meanwhile waits for one batch at most.
    public static let batchSize = 5000

    public func apply(keepDays: Int, now: Date, batchSize: Int = HistoryRetention.batchSize) throws -> Report {
        let cutoff = now.addingTimeInterval(-Double(keepDays) * 86400)
        let alerts = AlertBook(store: store)
        // Before the alerts go: a cleared alert names no job that must stay.
        let named = try alerts.openJobReferences()
        let jobs = try JobLog(store: store).expire(endedBefore: cutoff, bounds: RelayMetrics.jobBuckets, batchSize: batchSize) { db, id, point in
            if named.contains(id) { return true }
            // A point pruned from the relay that the vault still holds (listed, restorable).
            guard let point, let pointID = BlobID(hex: point) else { return false }
            return try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM pruned_points WHERE point_id = ?)", arguments: [pointID.data]) ?? false
        }
        return Report(keepDays: keepDays, jobs: jobs, alerts: try alerts.expire(clearedBefore: cutoff, batchSize: batchSize))
    }
}
