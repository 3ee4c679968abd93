import Foundation
import GRDB
import OutpostCore
import OutpostTestSupport
import Testing

@testable import OutpostStore

/// `JobLog.latestEnded` (the alert check reads it every round) walks the index `jobs_latest_ended` (schema v15)
/// kind by kind and machine by machine; it finds what the `GROUP BY kind, machine` it replaced found by reading
/// every job — ties, relay jobs (no machine), and the runs it leaves out included — in the same order.
@Suite struct JobLogLatestEndedTests {
    /// 2026-03-15 12:00 UTC.
    static let t0 = Date(timeIntervalSince1970: 1_773_576_000)

    /// The query `latestEnded` ran up to schema v14, kept to compare with; NOT INDEXED reads as it did then (a
    /// scan in the order of the ids, then a sort by kind and machine).
    static let groupBySQL = """
        SELECT *, MAX(ended_at) FROM jobs NOT INDEXED WHERE ended_at IS NOT NULL AND state NOT IN ('missed', 'cancelled') AND kind != 'group'
        GROUP BY kind, machine
        """

    func groupBy(_ store: Store) throws -> [Job] {
        try store.index.read("reading jobs") { db in try Row.fetchAll(db, sql: Self.groupBySQL).map(JobLog.job) }
    }

    @discardableResult
    func rec(_ log: JobLog, _ kind: Job.Kind, _ machine: String?, _ state: Job.State, start: TimeInterval, end: TimeInterval) throws -> Int64 {
        try log.record(
            kind, machine: machine, state: state, startedAt: Self.t0 + start, endedAt: Self.t0 + end, bytes: 0, files: 0, detail: nil)
    }

    @Test func tiesMachinesAndRelayJobsComeOutAsTheGroupByFoundThem() throws {
        let s = Scratch()
        let store = try makeStore(s)
        let log = JobLog(store: store)
        // Ties on the end: the first recorded is the latest run, whatever its state or start.
        let pc1 = try rec(log, .backup, "pc1", .failed, start: 5, end: 100)
        try rec(log, .backup, "pc1", .completed, start: 1, end: 100)
        try rec(log, .backup, "pc1", .completedWithWarnings, start: 9, end: 100)
        try rec(log, .backup, "pc1", .completed, start: 0, end: 90)
        // Later, but left out: missed, cancelled, still running, configuration changes.
        try rec(log, .backup, "pc1", .missed, start: 200, end: 200)
        try rec(log, .backup, "pc1", .cancelled, start: 200, end: 300)
        _ = try log.begin(.backup, machine: "pc1", trigger: "schedule", claiming: nil, deadline: Self.t0 + 3600, now: Self.t0 + 400)
        try store.index.write("a group change") { db in try JobLog.recordChange(db, "created protection group g", now: Self.t0 + 500) }
        // Another machine, ending later than it started after a later one (the end decides, not the start).
        try rec(log, .backup, "pc2", .completed, start: 50, end: 60)
        let pc2 = try rec(log, .backup, "pc2", .failed, start: 10, end: 70)
        let empty = try rec(log, .backup, "", .completed, start: 0, end: 1)
        // The relay's own jobs (no machine), of several kinds, and one of them for a machine too.
        try rec(log, .prune, nil, .completed, start: 0, end: 10)
        let prune = try rec(log, .prune, nil, .failed, start: 0, end: 20)
        let forwardTie = try rec(log, .forward, nil, .completedWithWarnings, start: 0, end: 30)
        try rec(log, .forward, nil, .failed, start: 1, end: 30)
        let restore = try rec(log, .restore, "pc2", .completed, start: 0, end: 5)
        let restoreRelay = try rec(log, .restore, nil, .failed, start: 0, end: 6)
        // A kind only ever missed, and a machine whose every run was cancelled: no latest run.
        try rec(log, .check, nil, .missed, start: 0, end: 1)
        try rec(log, .gc, "pc3", .cancelled, start: 0, end: 1)

        let latest = try log.latestEnded()
        #expect(latest == (try groupBy(store)))
        #expect(latest.map(\.id) == [empty, pc1, pc2, forwardTie, prune, restoreRelay, restore], "\(latest.map(\.id))")
        #expect(latest.first { $0.id == pc1 }?.state == .failed)
    }

    /// Many jobs, with ends on a coarse grid (ties everywhere), several kinds, some machines and none.
    @Test func manyJobsComeOutAsTheGroupByFoundThem() throws {
        let s = Scratch()
        let store = try makeStore(s)
        let kinds: [Job.Kind] = [.backup, .forward, .prune, .check, .restore, .group]
        let states: [Job.State] = [.completed, .completedWithWarnings, .failed, .missed, .cancelled]
        try store.index.write("recording jobs") { db in
            var x: UInt64 = 42
            func next(_ n: UInt64) -> UInt64 {
                x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return (x >> 33) % n
            }
            for _ in 0..<3000 {
                let kind = kinds[Int(next(UInt64(kinds.count)))]
                let m = next(9)
                let machine: String? = m == 0 ? nil : "pc\(m)"
                let state = states[Int(next(UInt64(states.count)))]
                let start = Self.t0.timeIntervalSince1970 + Double(next(10) * 100)
                try db.execute(
                    sql: "INSERT INTO jobs (kind, machine, state, started_at, ended_at) VALUES (?, ?, ?, ?, ?)",
                    arguments: [kind.rawValue, machine, state.rawValue, start, start + Double(next(5) * 50)])
            }
        }
        let latest = try JobLog(store: store).latestEnded()
        #expect(latest.count > 30)
        #expect(latest == (try groupBy(store)))
    }

    @Test func noJobsNoLatestRun() throws {
        let s = Scratch()
        #expect(try JobLog(store: try makeStore(s)).latestEnded().isEmpty)
    }

    // MARK: The index

    @Test func theLatestRunsAreFoundThroughTheIndex() throws {
        let s = Scratch()
        let store = try makeStore(s)
        let plan = try store.index.read("explaining") { db in
            try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + JobLog.latestEndedSQL).map { $0["detail"] as String }
        }
        #expect(plan.contains { $0.contains("INDEX jobs_latest_ended (kind=? AND machine>?)") }, "\(plan)")
        #expect(plan.contains { $0.contains("INDEX jobs_latest_ended (kind=? AND machine=? AND ended_at=?)") }, "\(plan)")
        #expect(plan.contains { $0.contains("INDEX jobs_latest_ended (kind=? AND machine=? AND ended_at>?)") }, "\(plan)")
        #expect(!plan.contains { $0.hasPrefix("SCAN jobs") }, "no scan of the jobs: \(plan)")
        // Only the few runs found are sorted by kind and machine.
        #expect(plan.filter { $0.contains("TEMP B-TREE") } == ["USE TEMP B-TREE FOR ORDER BY"], "\(plan)")
        let migrations = try store.index.read("reading") { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") }
        #expect(migrations.contains("v15"))
    }
}
