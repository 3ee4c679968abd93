import Foundation
import GRDB
import Logging
import OutpostCore
import OutpostHTTP
import OutpostStore
import Testing

@testable import OutpostRelay

/// The job metrics (docs/metrics.md) read at each scrape come from one pass over the index `jobs_ended` (schema
/// v15), no job row read, with the values the two scans of every job they replaced gave, histogram sums added in
/// the same order; history retention leaves them as they were (`job_tallies`, v17); and an alert's deliveries are
/// found through `alert_deliveries_by_alert` (v16).
@Suite struct RelayMetricsJobsTests {
    /// 2026-03-15 12:00 UTC.
    static let t0 = Date(timeIntervalSince1970: 1_773_576_000)

    /// The job metrics as they were read up to schema v14 (NOT INDEXED: a scan in the order of the ids).
    func groupByMetrics(_ store: Store) throws -> MetricsSnapshot {
        let m = MetricsSnapshot()
        let (ended, open, durations) = try store.index.read("reading jobs for metrics") { db in
            let ended = try Row.fetchAll(
                db, sql: "SELECT kind, state, COUNT(*) AS n FROM jobs NOT INDEXED WHERE ended_at IS NOT NULL GROUP BY kind, state")
            let open = try Row.fetchAll(
                db, sql: "SELECT kind, state, COUNT(*) AS n FROM jobs WHERE state IN ('queued', 'running') GROUP BY kind, state")
            var durations: [[String]: [Double]] = [:]
            let rows = try Row.fetchCursor(
                db, sql: "SELECT kind, state, ended_at - started_at AS d FROM jobs NOT INDEXED WHERE ended_at IS NOT NULL")
            while let row = try rows.next() {
                durations[[row["kind"], RelayMetrics.outcome(row["state"])], default: []].append(max(0, row["d"] as Double? ?? 0))
            }
            return (ended, open, durations)
        }
        for row in ended {
            m.counter(
                "outpost_relay_jobs_total", "Jobs ended, by kind and outcome.", row["n"],
                labels: [("kind", row["kind"]), ("outcome", RelayMetrics.outcome(row["state"]))])
        }
        for row in open {
            m.gauge(
                "outpost_relay_jobs_in_progress", "Jobs queued or running, by kind.", Double(row["n"] as Int64),
                labels: [("kind", row["kind"]), ("state", row["state"])])
        }
        for (key, values) in durations.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            m.histogram(
                "outpost_relay_job_duration_seconds", "How long ended jobs ran, by kind and outcome.", buckets: RelayMetrics.jobBuckets,
                labels: [("kind", key[0]), ("outcome", key[1])], values: values)
        }
        return m
    }

    /// The exposition's lines, sorted (the registry's order of series is its own).
    func lines(_ m: MetricsSnapshot) -> [String] {
        String(decoding: m.exposition(), as: UTF8.self).split(separator: "\n").map(String.init).sorted()
    }

    func metrics(_ store: Store) throws -> MetricsSnapshot {
        let m = MetricsSnapshot()
        try RelayMetrics(store: store, clock: .system, logger: Logger(label: "metrics-test"), backlog: nil).jobs(m)
        return m
    }

    func insert(_ store: Store, _ kind: String, _ machine: String?, _ state: String, start: Double, end: Double?) throws {
        try store.index.write("recording a job") { db in
            try db.execute(
                sql: "INSERT INTO jobs (kind, machine, state, started_at, ended_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [kind, machine, state, start, end])
        }
    }

    @Test func theJobMetricsAreTheOnesTheScansOfEveryJobGave() throws {
        let f = try AgentsFixture()
        let t = Self.t0.timeIntervalSince1970
        // Recorded in the order of the ids, started in the reverse: a histogram's sum depends on the order of its
        // values (1e16 + 1 + 1 + 1 + 1 is not 1 + 1 + 1 + 1 + 1e16 in doubles), and the ids' is the one it had.
        let values: [Double] = [1e16, 1, 1, 1, 1]
        for (i, d) in values.enumerated() { try insert(f.store, "backup", "pc1", "completed", start: Double(10 - i), end: Double(10 - i) + d) }
        #expect(values.reduce(0, +) != values.reversed().reduce(0, +), "the order of the sum shows")
        try insert(f.store, "backup", "pc2", "completed with warnings", start: t, end: t + 0.1)
        try insert(f.store, "backup", nil, "completed with warnings", start: t, end: t + 0.2)
        try insert(f.store, "backup", "pc2", "completed with warnings", start: t - 1, end: t + 0.3)
        try insert(f.store, "backup", "pc2", "failed", start: t, end: t - 5)
        try insert(f.store, "prune", nil, "failed", start: t, end: t + 7200)
        try insert(f.store, "group", nil, "completed", start: t, end: t)
        try insert(f.store, "backup", "pc3", "missed", start: t, end: t)
        try insert(f.store, "restore", "pc3", "cancelled", start: t, end: t + 86401)
        try insert(f.store, "backup", "pc3", "running", start: t, end: nil)
        try insert(f.store, "backup", "pc4", "queued", start: t, end: nil)
        _ = try JobLog(store: f.store).start(.gc, now: Self.t0)

        let new = lines(try metrics(f.store))
        #expect(new == lines(try groupByMetrics(f.store)))
        #expect(new.contains(#"outpost_relay_job_duration_seconds_sum{kind="backup",outcome="completed"} 1e+16"#), "\(new)")
        #expect(new.contains(#"outpost_relay_jobs_total{kind="backup",outcome="completed_with_warnings"} 3"#), "\(new)")
        #expect(new.contains(#"outpost_relay_jobs_in_progress{kind="gc",state="running"} 1.0"#), "\(new)")
    }

    @Test func noJobsNoJobMetrics() throws {
        let f = try AgentsFixture()
        #expect(lines(try metrics(f.store)) == lines(try groupByMetrics(f.store)))
    }

    /// Many jobs of several kinds and states, with fractional durations.
    @Test func manyJobsGiveTheSameMetrics() throws {
        let f = try AgentsFixture()
        try f.store.index.write("recording jobs") { db in
            let states = ["completed", "completed with warnings", "failed", "missed", "cancelled", "running"]
            var x: UInt64 = 7
            func next(_ n: UInt64) -> UInt64 {
                x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return (x >> 33) % n
            }
            for _ in 0..<2000 {
                // Near 0: durations keep their fractions (near t0 they are multiples of 2^-22, summed exactly in any order).
                let start = Double(next(5000)) * 1.7
                let state = states[Int(next(UInt64(states.count)))]
                try db.execute(
                    sql: "INSERT INTO jobs (kind, machine, state, started_at, ended_at) VALUES (?, ?, ?, ?, ?)",
                    arguments: [
                        ["backup", "forward", "restore", "check"][Int(next(4))], "pc\(next(5))", state, start,
                        state == "running" ? nil : start + Double(next(90000)) / 3.3,
                    ])
            }
        }
        #expect(lines(try metrics(f.store)) == lines(try groupByMetrics(f.store)))
    }

    // MARK: History retention

    /// History retention deletes old jobs (`[jobs] keep_days`); what it deleted stays counted (`job_tallies`,
    /// schema v17), so that no counter or histogram series goes down (Prometheus would take it for a reset, and
    /// `increase(outpost_relay_jobs_total{outcome="failed"}[1h])` would jump by every failed job kept).
    @Test func retentionLeavesTheJobMetricsAsTheyWere() throws {
        let f = try AgentsFixture()
        let t = Self.t0.timeIntervalSince1970
        let states = ["completed", "completed with warnings", "failed", "missed", "cancelled"]
        // Whole seconds, summed exactly in any order; old jobs a year before t0, young ones at t0.
        for i in 0..<60 {
            let start = (i % 2 == 0 ? t - 365 * 86400 : t) + Double(i)
            try insert(
                f.store, ["backup", "prune", "check"][i % 3], "pc\(i % 4)", states[i % states.count], start: start,
                end: start + Double([0, 1, 5, 59, 600, 4000, 90000, -3][i % 8]))
        }
        try insert(f.store, "backup", "pc1", "running", start: t, end: nil)
        let before = lines(try metrics(f.store))
        #expect(before == lines(try groupByMetrics(f.store)))

        let report = try HistoryRetention(store: f.store).apply(keepDays: 30, now: Self.t0, batchSize: 7)
        #expect(report.jobs > 20, "old jobs went")
        #expect(lines(try metrics(f.store)) == before, "every counter, bucket, _sum and _count as it was")
        #expect(lines(try groupByMetrics(f.store)) != before, "the jobs table alone would have gone down")

        // A second run deletes nothing more and changes nothing; new jobs still count.
        _ = try HistoryRetention(store: f.store).apply(keepDays: 30, now: Self.t0)
        #expect(lines(try metrics(f.store)) == before)
        try insert(f.store, "prune", nil, "failed", start: t + 100, end: t + 130)
        let after = lines(try metrics(f.store))
        let failed = before.first { $0.hasPrefix(#"outpost_relay_jobs_total{kind="prune",outcome="failed"}"#) }
        let failedAfter = after.first { $0.hasPrefix(#"outpost_relay_jobs_total{kind="prune",outcome="failed"}"#) }
        #expect(failed.flatMap { Int($0.split(separator: " ").last!) }.map { $0 + 1 } == failedAfter.flatMap { Int($0.split(separator: " ").last!) })
        #expect(after.contains { $0.hasPrefix(#"outpost_relay_job_duration_seconds_bucket{kind="prune",outcome="failed",le="60.0"}"#) })
        let bucket = { (l: [String]) in
            l.first { $0.hasPrefix(#"outpost_relay_job_duration_seconds_bucket{kind="prune",outcome="failed",le="60.0"}"#) }
                .flatMap { Int($0.split(separator: " ").last!) } ?? 0
        }
        #expect(bucket(after) == bucket(before) + 1)
    }

    // MARK: The indexes

    func plan(_ store: Store, _ sql: String) throws -> [String] {
        try store.index.read("explaining") { db in try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql).map { $0["detail"] as String } }
    }

    @Test func theEndedJobsAreReadFromTheIndexAlone() throws {
        let f = try AgentsFixture()
        let sql = JobLog.talliesSQL(bounds: RelayMetrics.jobBuckets.count).replacingOccurrences(of: "?", with: "1.0")
        #expect(try plan(f.store, sql) == ["SCAN jobs USING COVERING INDEX jobs_ended"], "no job row, no sort")
    }

    @Test func anAlertsDeliveriesAreFoundThroughTheIndex() throws {
        let f = try AgentsFixture()
        #expect(
            try plan(f.store, "SELECT * FROM alert_deliveries WHERE alert = 1 ORDER BY id")
                == ["SEARCH alert_deliveries USING INDEX alert_deliveries_by_alert (alert=?)"])
        let retention = try plan(
            f.store,
            """
            SELECT id FROM alerts WHERE cleared_at IS NOT NULL AND cleared_at < 1
            AND NOT EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert = alerts.id AND d.state = 'pending') ORDER BY id LIMIT 5
            """)
        #expect(retention.contains("SEARCH d USING INDEX alert_deliveries_by_alert (alert=?)"), "\(retention)")
        let migrations = try f.store.index.read("reading") { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") }
        #expect(migrations.contains("v16"))
    }
}
