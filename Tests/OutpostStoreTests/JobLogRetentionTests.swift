import Foundation
import GRDB
import OutpostArchive
import OutpostCore
import OutpostTestSupport
import Testing

@testable import OutpostStore

/// History retention of the job log (`JobLog.expire`, `[jobs] keep_days`): old ended jobs go, in batches; what
/// is still read or referred to stays whatever its age, and what goes stays counted (`job_tallies`); and each machine's newest good backup is found through
/// the index `jobs_good_backup` (schema v14), not by a scan of every job.
@Suite struct JobLogRetentionTests {
    /// 2026-03-15 12:00 UTC.
    static let now = Date(timeIntervalSince1970: 1_773_576_000)
    static let day: TimeInterval = 86400
    /// 400 days before `now`: the default keep_days.
    static let cutoff = now - 400 * day

    /// A job of `kind` that started `daysAgo` days before `now` and ran ten minutes.
    @discardableResult
    func rec(_ log: JobLog, _ kind: Job.Kind, _ machine: String?, _ state: Job.State, daysAgo: Double) throws -> Int64 {
        let start = Self.now - daysAgo * Self.day
        return try log.record(kind, machine: machine, state: state, startedAt: start, endedAt: start + 600, bytes: 0, files: 0, detail: nil)
    }

    func ids(_ log: JobLog) throws -> Set<Int64> { Set(try log.list(limit: 100_000).map(\.id)) }

    @Test func oldEndedJobsGoWithTheirFailedFilesAndRecentOnesStay() throws {
        let s = Scratch()
        let log = JobLog(store: try makeStore(s))
        let old = try log.begin(.backup, machine: "pc1", trigger: "schedule", claiming: nil, deadline: Self.now, now: Self.now - 500 * Self.day)
        try log.end(
            old, machine: "pc1", .failed, bytes: 0, files: 0, detail: "disk full", failedFiles: [.init(path: "/a", reason: "EIO")],
            now: Self.now - 500 * Self.day + 60)
        try rec(log, .forward, nil, .failed, daysAgo: 450)
        let young = try rec(log, .backup, "pc1", .failed, daysAgo: 10)
        let newestGood = try rec(log, .backup, "pc1", .completed, daysAgo: 5)
        let latestForward = try rec(log, .forward, nil, .completed, daysAgo: 3)

        #expect(try log.expire(endedBefore: Self.cutoff, bounds: [60, 3600]) == 2)
        #expect(try ids(log) == [young, newestGood, latestForward])
        #expect(throws: StoreError.self, "the failed files went with their job (a column of its row)") { try log.job(old) }
    }

    @Test func eachMachinesNewestGoodBackupStaysHoweverOld() throws {
        let s = Scratch()
        let log = JobLog(store: try makeStore(s))
        try rec(log, .backup, "pc1", .completed, daysAgo: 900)
        let pc1 = try rec(log, .backup, "pc1", .completedWithWarnings, daysAgo: 800)
        try rec(log, .backup, "pc1", .failed, daysAgo: 700)
        let pc1Latest = try rec(log, .backup, "pc1", .failed, daysAgo: 600)
        let pc2 = try rec(log, .backup, "pc2", .completed, daysAgo: 500)
        try rec(log, .backup, "pc3", .completed, daysAgo: 450)
        let pc3 = try rec(log, .backup, "pc3", .completed, daysAgo: 1)
        let before = try log.lastGoodBackups()

        #expect(try log.expire(endedBefore: Self.cutoff, bounds: [60, 3600]) == 3)
        #expect(try ids(log) == [pc1, pc1Latest, pc2, pc3], "the newest good backup, and the latest run the alert check reads")
        #expect(try log.lastGoodBackups() == before, "the overview and the missed-backup check see the same backups")
        #expect(before == ["pc1": Self.now - 800 * Self.day, "pc2": Self.now - 500 * Self.day, "pc3": Self.now - 1 * Self.day])
    }

    @Test func theLatestEndedRunOfEachKindStaysSoNoAlertChanges() throws {
        let s = Scratch()
        let log = JobLog(store: try makeStore(s))
        try rec(log, .check, nil, .completed, daysAgo: 700)
        let failedCheck = try rec(log, .check, nil, .failed, daysAgo: 600)
        try rec(log, .prune, nil, .failed, daysAgo: 700)
        let prune = try rec(log, .prune, nil, .completed, daysAgo: 600)
        try rec(log, .restore, "pc1", .failed, daysAgo: 500)
        let restore = try rec(log, .restore, "pc1", .completed, daysAgo: 450)
        let before = try log.latestEnded()

        #expect(try log.expire(endedBefore: Self.cutoff, bounds: [60, 3600]) == 3)
        #expect(try ids(log) == [failedCheck, prune, restore])
        #expect(try log.latestEnded() == before)
    }

    @Test func runningAndQueuedJobsStayHoweverOld() throws {
        let s = Scratch()
        let log = JobLog(store: try makeStore(s))
        let old = Self.now - 500 * Self.day
        let queued = try log.enqueue(.backup, machine: "pc1", trigger: "now", deadline: Self.now + 3600, now: old)
        let running = try log.begin(.backup, machine: "pc2", trigger: "schedule", claiming: nil, deadline: Self.now + 3600, now: old)
        let local = try log.start(.gc, now: old)

        #expect(try log.expire(endedBefore: Self.cutoff, bounds: [60, 3600]) == 0)
        #expect(try ids(log) == [queued, running, local])
    }

    @Test func aJobWhosePointTheCatalogHoldsStays() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let log = JobLog(store: store)
        s.write("data/a", pseudoRandom(10_000, seed: 3))
        let point = try await backup(store, machine: "pc1", [s.sub("data")]).point
        // The agent's job of that point, 500 days ago (a manual one, failed, so that it is not the newest good).
        let start = Self.now - 500 * Self.day
        let job = try log.begin(.backup, machine: "pc1", trigger: "manual", claiming: nil, deadline: Self.now, now: start)
        #expect(try log.attach(point: point.id.hex, to: job, machine: "pc1"))
        try log.end(job, machine: "pc1", .failed, bytes: 0, files: 0, detail: "post-hook failed", failedFiles: [], now: start + 60)
        let lost = try log.begin(.backup, machine: "pc1", trigger: "manual", claiming: nil, deadline: Self.now, now: start)
        #expect(try log.attach(point: String(repeating: "ab", count: 32), to: lost, machine: "pc1"))
        try log.end(lost, machine: "pc1", .failed, bytes: 0, files: 0, detail: nil, failedFiles: [], now: start + 30)
        let latest = try rec(log, .backup, "pc1", .completed, daysAgo: 1)

        #expect(try log.expire(endedBefore: Self.cutoff, bounds: [60, 3600]) == 1, "the job of a point no longer held goes")
        #expect(try ids(log) == [job, latest])
        #expect(try log.job(job).point == point.id.hex)
    }

    @Test func whatTheCallerKeepsStays() throws {
        let s = Scratch()
        let log = JobLog(store: try makeStore(s))
        let named = try rec(log, .backup, "pc1", .failed, daysAgo: 600)
        try rec(log, .backup, "pc1", .failed, daysAgo: 500)
        try rec(log, .backup, "pc1", .failed, daysAgo: 1)
        #expect(try log.expire(endedBefore: Self.cutoff, bounds: [60, 3600]) { _, id, _ in id == named } == 1)
        #expect(try ids(log).contains(named))
    }

    /// Batches stop where the last one did: kept jobs among the old ones, and more old jobs than a batch holds.
    @Test func batchesGoThroughEveryOldJob() throws {
        let s = Scratch()
        let log = JobLog(store: try makeStore(s))
        var jobs: [Int64] = []
        for i in 0..<23 {
            // Started at the same time in pairs: the batches continue by id within one start.
            jobs.append(try rec(log, .backup, "pc\(i % 4)", i % 4 == 0 ? .completed : .failed, daysAgo: 1000 - Double(i / 2)))
        }
        let young = try rec(log, .backup, "pc1", .completed, daysAgo: 2)
        // pc0's newest good backup (and latest run), the latest runs of pc2 and pc3; pc1's is the young one.
        let kept: Set<Int64> = [jobs[20], jobs[22], jobs[19], young]
        #expect(try log.expire(endedBefore: Self.cutoff, bounds: [60, 3600], batchSize: 3) == 20)
        #expect(try ids(log) == kept)
    }

    /// What each batch deletes is added to `job_tallies` (schema v17) in its transaction: the ended jobs'
    /// counts, duration sums and bucket counts by kind and state are what they were before, and the table
    /// holds exactly the deleted jobs.
    @Test func whatGoesIsTalliedSoTheTotalsStay() throws {
        let s = Scratch()
        let store = try makeStore(s)
        let log = JobLog(store: store)
        for i in 0..<23 { try rec(log, i % 3 == 0 ? .check : .backup, "pc\(i % 4)", i % 4 == 0 ? .completed : .failed, daysAgo: 1000 - Double(i)) }
        try rec(log, .backup, "pc1", .failed, daysAgo: 2)
        let bounds: [Double] = [60, 600, 3600]
        let totals = { try store.index.read("reading") { db in try JobLog.endedTallies(db, bounds: bounds) } }
        let before = try totals()
        #expect(before.map(\.jobs).reduce(0, +) == 24)
        let gone = try log.expire(endedBefore: Self.cutoff, bounds: bounds, batchSize: 4)
        #expect(gone > 10)
        #expect(try totals() == before)
        let tallied = try store.index.read("reading") { db in try JobLog.retainedTallies(db) }
        #expect(tallied.map(\.jobs).reduce(0, +) == Int64(gone))
        #expect(tallied.allSatisfy { $0.buckets == [0, $0.jobs, $0.jobs] && $0.durationSum == 600 * Double($0.jobs) }, "\(tallied)")
    }

    // MARK: The index

    @Test func theNewestGoodBackupsAreFoundThroughTheIndex() throws {
        let s = Scratch()
        let store = try makeStore(s)
        let plan = try store.index.read("explaining") { db in
            try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + JobLog.newestGoodBackupsSQL).map { $0["detail"] as String }
        }
        #expect(plan.contains { $0.contains("USING INDEX jobs_good_backup (machine=?)") }, "\(plan)")
        #expect(plan.contains { $0.contains("USING INDEX jobs_good_backup (machine>?)") }, "\(plan)")
        #expect(!plan.contains { $0.hasPrefix("SCAN jobs") || $0.contains("TEMP B-TREE") }, "no scan of the jobs: \(plan)")
        let migrations = try store.index.read("reading") { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") }
        #expect(migrations.contains("v14"))
    }

    @Test func lastGoodBackupsCountsOnlyCompletedBackupsOfMachines() throws {
        let s = Scratch()
        let log = JobLog(store: try makeStore(s))
        try rec(log, .backup, "pc1", .completed, daysAgo: 3)
        try rec(log, .backup, "pc1", .completedWithWarnings, daysAgo: 2)
        try rec(log, .backup, "pc1", .failed, daysAgo: 1)
        try rec(log, .backup, "pc2", .missed, daysAgo: 1)
        try rec(log, .restore, "pc2", .completed, daysAgo: 1)
        try rec(log, .backup, nil, .completed, daysAgo: 1)
        try rec(log, .backup, "a", .completed, daysAgo: 4)
        #expect(try log.lastGoodBackups() == ["pc1": Self.now - 2 * Self.day, "a": Self.now - 4 * Self.day])
    }
}
