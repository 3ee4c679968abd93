import Foundation
import GRDB
import OutpostCore

/// A job of the relay (issue 12): a backup committed, a forward, a prune, a gc, a check, a restore or a rebuild,
/// with when it ran, how it ended and what it moved.
public struct Job: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable { case backup, forward, prune, gc, check, verify, restore, rebuild, group }
    public enum State: String, Sendable, Codable, CaseIterable {
        case queued, running, completed, completedWithWarnings = "completed with warnings", failed, cancelled, missed
    }
    public struct FailedFile: Sendable, Codable, Equatable {
        public var path: String
        public var reason: String
        public init(path: String, reason: String) { self.path = path; self.reason = reason }
    }

    public var id: Int64
    public var kind: Kind
    /// The machine of a machine's job (backup, restore); nil for the relay's own.
    public var machine: String?
    public var state: State
    public var startedAt: Date
    public var endedAt: Date?
    public var bytes: Int64
    public var files: Int
    /// What it did, or why it failed, in a line.
    public var detail: String?
    public var failedFiles: [FailedFile]
    /// What started it: `schedule`, `now` (`relay backup-now`), `manual` (`outpost backup`); nil for the relay's own.
    public var trigger: String?
    /// The recovery point a backup committed (hex), once it did.
    public var point: String?
    /// A running or queued job not ended by then is failed by the relay (`JobLog.sweep`).
    public var deadline: Date?
    /// The last word from the agent running it (its start, a progress report).
    public var reportedAt: Date?
}

/// The relay's job records, in the store's index (schema `v9`, the store's own so that every layer can write
/// them): each job is recorded when it starts (`running`) and again when it ends, so a job killed midway stays
/// `running` until `markAbandoned` (at the next start of `relay serve`) marks it failed.
public struct JobLog: Sendable {
    let index: StoreIndex

    public init(store: Store) { index = store.index }

    static let schema = IndexMigration(
        "v9",
        sql: """
            CREATE TABLE jobs (
                id INTEGER PRIMARY KEY,
                kind TEXT NOT NULL,
                machine TEXT,
                state TEXT NOT NULL,
                started_at REAL NOT NULL,
                ended_at REAL,
                bytes INTEGER NOT NULL DEFAULT 0,
                files INTEGER NOT NULL DEFAULT 0,
                detail TEXT,
                failed_files TEXT NOT NULL DEFAULT '[]'
            );
            CREATE INDEX jobs_by_start ON jobs(started_at);
            """)

    /// Agents' jobs (issue 12): what started a job, the point a backup committed, the deadline after which the
    /// relay fails it, and the agent's last report (a job whose agent went silent is failed sooner).
    static let agentSchema = IndexMigration(
        "v10",
        sql: """
            ALTER TABLE jobs ADD COLUMN trigger TEXT;
            ALTER TABLE jobs ADD COLUMN point TEXT;
            ALTER TABLE jobs ADD COLUMN deadline REAL;
            ALTER TABLE jobs ADD COLUMN reported_at REAL;
            CREATE INDEX jobs_open ON jobs(state) WHERE state IN ('queued', 'running');
            """)

    /// Each machine's newest good backup found in a few index steps (`lastGoodBackups`, read by the console's
    /// overview, the missed-backup check and the metrics), not by a scan of every job the relay kept.
    static let goodBackupSchema = IndexMigration(
        "v14",
        sql: """
            CREATE INDEX jobs_good_backup ON jobs(machine, started_at) WHERE kind = 'backup' AND state IN ('completed', 'completed with warnings');
            """)

    /// What the alert check and the metrics read at every round, found without reading every job the relay kept:
    /// `jobs_latest_ended` holds the runs `latestEnded` looks at, so that each kind's and machine's latest one
    /// is a few index look-ups (`latestEndedSQL`); `jobs_ended` holds every ended job's kind, outcome and times
    /// in the order of their ids, so that the metrics' counts and durations are one pass over it, no job row read.
    static let latestEndedSchema = IndexMigration(
        "v15",
        sql: """
            CREATE INDEX jobs_latest_ended ON jobs(kind, machine, ended_at) WHERE ended_at IS NOT NULL AND state NOT IN ('missed', 'cancelled') AND kind != 'group';
            CREATE INDEX jobs_ended ON jobs(kind, state, id, started_at, ended_at) WHERE ended_at IS NOT NULL;
            """)

    /// What history retention deleted, so that the job metrics it feeds (counters, a histogram) never go down
    /// (docs/metrics.md): per kind and end state, how many jobs went, the sum of their durations, and the
    /// cumulative counts of those durations for the histogram's upper bounds (a JSON array, `expire`'s `bounds`).
    static let talliesSchema = IndexMigration(
        "v17",
        sql: """
            CREATE TABLE job_tallies (
                kind TEXT NOT NULL,
                state TEXT NOT NULL,
                jobs INTEGER NOT NULL,
                duration_sum REAL NOT NULL,
                buckets TEXT NOT NULL,
                PRIMARY KEY (kind, state)
            ) WITHOUT ROWID;
            """)

    /// Ended jobs of one kind and end state, aggregated: what the job metrics need, no duration read one by one.
    public struct Tally: Sendable, Equatable {
        public var kind: String
        public var state: String
        public var jobs: Int64
        /// The sum of their durations (a negative one counts as 0).
        public var durationSum: Double
        /// How many lasted at most each upper bound, in the bounds' order.
        public var buckets: [Int64]

        mutating func add(_ other: Tally) {
            jobs += other.jobs
            durationSum += other.durationSum
            // Bounds of another length (they changed between versions) cannot be added up: those counts are lost.
            if buckets.count == other.buckets.count { buckets = zip(buckets, other.buckets).map { $0 + $1 } }
        }
    }

    /// The ended jobs matching `filter` aggregated by kind and end state, in SQL, each bound's count a `?`.
    /// Without a filter it reads the index `jobs_ended` (schema v15) alone, in its order: each group's durations
    /// are summed in the order of their ids, as the histogram that recorded them one by one did.
    /// A bound's count is a `COUNT(*) FILTER`: no aggregate step for a job above it (about a fifth faster than
    /// `SUM(d <= ?)` at 900,000 jobs). Bounds are not negative, so a negative duration needs no `MAX` there.
    public static func talliesSQL(bounds: Int, filter: String = "") -> String {
        "SELECT kind, state, COUNT(*) AS n, TOTAL(MAX(0.0, ended_at - started_at)) AS s"
            + (0..<bounds).map { ", COUNT(*) FILTER (WHERE ended_at - started_at <= ?) AS b\($0)" }.joined()
            + " FROM jobs WHERE ended_at IS NOT NULL\(filter) GROUP BY kind, state ORDER BY kind, state"
    }

    static func tallies(_ db: Database, bounds: [Double], filter: String = "", arguments: StatementArguments = []) throws -> [Tally] {
        precondition(bounds.allSatisfy { $0 >= 0 }, "histogram bounds of job durations are not negative")
        var args = StatementArguments(bounds)
        args += arguments
        return try Row.fetchAll(db, sql: talliesSQL(bounds: bounds.count, filter: filter), arguments: args).map { row in
            Tally(
                kind: row["kind"], state: row["state"], jobs: row["n"], durationSum: row["s"],
                buckets: bounds.indices.map { row["b\($0)"] as Int64? ?? 0 })
        }
    }

    /// What history retention deleted, by kind and end state.
    static func retainedTallies(_ db: Database) throws -> [Tally] {
        try Row.fetchAll(db, sql: "SELECT * FROM job_tallies ORDER BY kind, state").map { row in
            Tally(
                kind: row["kind"], state: row["state"], jobs: row["jobs"], durationSum: row["duration_sum"],
                buckets: (try? JSONDecoder().decode([Int64].self, from: Data((row["buckets"] as String).utf8))) ?? [])
        }
    }

    /// Every job that ever ended, by kind and end state (ordered so): the ones still in the table, with the ones
    /// history retention deleted added, so that these numbers only grow. `bounds` are the histogram's upper bounds
    /// (the ones `expire` was given).
    public static func endedTallies(_ db: Database, bounds: [Double]) throws -> [Tally] {
        var all: [[String]: Tally] = [:]
        for t in try tallies(db, bounds: bounds) { all[[t.kind, t.state]] = t }
        for t in try retainedTallies(db) {
            var merged = all[[t.kind, t.state]] ?? Tally(kind: t.kind, state: t.state, jobs: 0, durationSum: 0, buckets: bounds.map { _ in 0 })
            merged.add(t)
            all[[t.kind, t.state]] = merged
        }
        return all.values.sorted { [$0.kind, $0.state].lexicographicallyPrecedes([$1.kind, $1.state]) }
    }

    /// Records a job that starts now; returns its id.
    @discardableResult
    public func start(_ kind: Job.Kind, machine: String? = nil, now: Date = Date()) throws -> Int64 {
        try index.write("recording a job") { db in
            try db.execute(
                sql: "INSERT INTO jobs (kind, machine, state, started_at) VALUES (?, ?, 'running', ?)",
                arguments: [kind.rawValue, machine, now.timeIntervalSince1970])
            return db.lastInsertedRowID
        }
    }

    /// Records how a job ended.
    public func finish(
        _ id: Int64, _ state: Job.State, bytes: Int64 = 0, files: Int = 0, detail: String? = nil, failedFiles: [Job.FailedFile] = [],
        now: Date = Date()
    ) throws {
        let failures = String(decoding: try JSONEncoder().encode(failedFiles), as: UTF8.self)
        try index.write("recording a job") { db in
            try db.execute(
                sql: "UPDATE jobs SET state = ?, ended_at = ?, bytes = ?, files = ?, detail = ?, failed_files = ? WHERE id = ?",
                arguments: [state.rawValue, now.timeIntervalSince1970, bytes, files, detail, failures, id])
        }
    }

    /// Records a job that ran from `startedAt` to `endedAt` (a backup, known once its point is committed), in one
    /// write.
    @discardableResult
    public func record(
        _ kind: Job.Kind, machine: String?, state: Job.State, startedAt: Date, endedAt: Date, bytes: Int64, files: Int, detail: String?
    ) throws -> Int64 {
        try index.write("recording a job") { db in
            try db.execute(
                sql: "INSERT INTO jobs (kind, machine, state, started_at, ended_at, bytes, files, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                arguments: [
                    kind.rawValue, machine, state.rawValue, startedAt.timeIntervalSince1970, endedAt.timeIntervalSince1970, bytes, files, detail,
                ])
            return db.lastInsertedRowID
        }
    }

    /// Runs `body` as a job of `kind`: recorded running, then completed (with what `summary` makes of the result),
    /// or failed with the error, which is thrown on. A job that cannot be recorded does not stop the work.
    public func run<T>(
        _ kind: Job.Kind, machine: String? = nil, summary: (T) -> (detail: String?, bytes: Int64) = { _ in (nil, 0) },
        _ body: () async throws -> T
    ) async throws -> T {
        let id = try? start(kind, machine: machine)
        do {
            // Lines logged meanwhile carry the job's id (`--log-format json`).
            let value = try await LogContext.$job.withValue(id) { try await body() }
            ended(id, value, summary)
            return value
        } catch {
            if let id { try? finish(id, .failed, detail: "\(error)") }
            throw error
        }
    }

    /// The same for blocking work (a gc on its own thread).
    public func run<T>(
        _ kind: Job.Kind, machine: String? = nil, summary: (T) -> (detail: String?, bytes: Int64) = { _ in (nil, 0) }, _ body: () throws -> T
    ) throws -> T {
        let id = try? start(kind, machine: machine)
        do {
            let value = try LogContext.$job.withValue(id) { try body() }
            ended(id, value, summary)
            return value
        } catch {
            if let id { try? finish(id, .failed, detail: "\(error)") }
            throw error
        }
    }

    private func ended<T>(_ id: Int64?, _ value: T, _ summary: (T) -> (detail: String?, bytes: Int64)) {
        guard let id else { return }
        let (detail, bytes) = summary(value)
        try? finish(id, .completed, bytes: bytes, detail: detail)
    }

    /// A change of the relay's configuration (a protection group's), as a completed job, inside the change's own
    /// transaction.
    public static func recordChange(_ db: Database, _ detail: String, now: Date) throws {
        try db.execute(
            sql: "INSERT INTO jobs (kind, state, started_at, ended_at, detail) VALUES ('group', 'completed', ?, ?, ?)",
            arguments: [now.timeIntervalSince1970, now.timeIntervalSince1970, detail])
    }

    // MARK: Agents' jobs

    /// Queues a job for an agent (`relay backup-now`): it waits, `queued`, until the machine's agent claims it, and
    /// fails at `deadline` if none does.
    public func enqueue(_ kind: Job.Kind, machine: String, trigger: String, deadline: Date, now: Date = Date()) throws -> Int64 {
        try index.write("queueing a job") { db in
            try db.execute(
                sql: "INSERT INTO jobs (kind, machine, state, started_at, trigger, deadline) VALUES (?, ?, 'queued', ?, ?, ?)",
                arguments: [kind.rawValue, machine, now.timeIntervalSince1970, trigger, deadline.timeIntervalSince1970])
            return db.lastInsertedRowID
        }
    }

    /// Starts an agent's job: claims the queued job `queued` of the machine (now running), or records a new one.
    /// A queued job already claimed, ended, or another machine's is refused (`.conflict`, `.notFound`).
    public func begin(
        _ kind: Job.Kind, machine: String, trigger: String, claiming queued: Int64?, deadline: Date, now: Date = Date()
    ) throws -> Int64 {
        try index.write("starting a job") { db in
            let t = now.timeIntervalSince1970
            if let queued {
                guard let row = try Row.fetchOne(db, sql: "SELECT machine, state FROM jobs WHERE id = ?", arguments: [queued]),
                    (row["machine"] as String?) == machine
                else { throw StoreError(.notFound, "machine \(machine) has no job \(queued); ask for the plan again") }
                guard (row["state"] as String) == Job.State.queued.rawValue else {
                    throw StoreError(
                        .conflict, "job \(queued) of machine \(machine) is \(row["state"] as String), not queued: it was claimed or ended already")
                }
                try db.execute(
                    sql: "UPDATE jobs SET state = 'running', started_at = ?, reported_at = ?, deadline = ? WHERE id = ?",
                    arguments: [t, t, deadline.timeIntervalSince1970, queued])
                return queued
            }
            try db.execute(
                sql: "INSERT INTO jobs (kind, machine, state, started_at, trigger, deadline, reported_at) VALUES (?, ?, 'running', ?, ?, ?, ?)",
                arguments: [kind.rawValue, machine, t, trigger, deadline.timeIntervalSince1970, t])
            return db.lastInsertedRowID
        }
    }

    /// The machine's job `id` while it runs; an ended one, or another machine's, is refused.
    private func running(_ db: Database, _ id: Int64, machine: String) throws {
        guard let row = try Row.fetchOne(db, sql: "SELECT machine, state FROM jobs WHERE id = ?", arguments: [id]),
            (row["machine"] as String?) == machine
        else { throw StoreError(.notFound, "machine \(machine) has no job \(id)") }
        let state: String = row["state"]
        guard state == Job.State.running.rawValue else {
            throw StoreError(.conflict, "job \(id) of machine \(machine) has ended (\(state)); a report after its end is not recorded")
        }
    }

    /// An agent's progress report on its running job.
    public func report(_ id: Int64, machine: String, bytes: Int64, files: Int, detail: String?, now: Date = Date()) throws {
        try index.write("recording a job's progress") { db in
            try running(db, id, machine: machine)
            try db.execute(
                sql: "UPDATE jobs SET bytes = ?, files = ?, detail = COALESCE(?, detail), reported_at = ? WHERE id = ?",
                arguments: [bytes, files, detail, now.timeIntervalSince1970, id])
        }
    }

    /// The recovery point a running backup job committed (the commit names its job).
    public func attach(point: String, to id: Int64, machine: String) throws -> Bool {
        try index.write("recording a job's point") { db in
            guard (try? running(db, id, machine: machine)) != nil else { return false }
            try db.execute(sql: "UPDATE jobs SET point = ? WHERE id = ?", arguments: [point, id])
            return true
        }
    }

    /// An agent's report of how its job ended; only a running job of that machine ends, once.
    public func end(
        _ id: Int64, machine: String, _ state: Job.State, bytes: Int64, files: Int, detail: String?, failedFiles: [Job.FailedFile],
        now: Date = Date()
    ) throws {
        guard ![.queued, .running].contains(state) else {
            throw StoreError(.invalid, "a job ends completed, completed with warnings, failed or cancelled, not \(state.rawValue)")
        }
        let failures = String(decoding: try JSONEncoder().encode(failedFiles), as: UTF8.self)
        try index.write("recording how a job ended") { db in
            try running(db, id, machine: machine)
            try db.execute(
                sql:
                    "UPDATE jobs SET state = ?, ended_at = ?, bytes = ?, files = ?, detail = ?, failed_files = ?, reported_at = ? WHERE id = ?",
                arguments: [state.rawValue, now.timeIntervalSince1970, bytes, files, detail, failures, now.timeIntervalSince1970, id])
        }
    }

    /// Ends the agents' jobs that will not end by themselves, and returns them: queued ones no agent claimed by
    /// their deadline, running ones past their deadline, and running ones whose agent has been silent for
    /// `silence` (it died, or lost the relay; an agent reports every 30 s, `outpost backup` run by hand does not). A backup that committed its point before its agent went silent
    /// completed; the others failed, with the reason.
    @discardableResult
    public func sweep(now: Date = Date(), silence: TimeInterval) throws -> [Job] {
        let t = now.timeIntervalSince1970
        return try index.write("closing overdue jobs") { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM jobs WHERE state IN ('queued', 'running') AND deadline IS NOT NULL
                    AND (deadline < ? OR (state = 'running' AND trigger IN ('schedule', 'now') AND reported_at < ?))
                    """, arguments: [t, t - silence])
            var ended: [Job] = []
            for row in rows {
                var job = Self.job(row)
                let machine = job.machine ?? "?"
                if job.state == .queued {
                    job.state = .failed
                    job.detail = "no agent of machine \(machine) took this job before its deadline: is `outpost agent run` running there?"
                } else if let point = job.point {
                    job.state = .completed
                    job.detail = "recovery point \(point.prefix(12)) committed; the agent of \(machine) stopped reporting afterwards"
                } else if let deadline = job.deadline, deadline < now {
                    job.state = .failed
                    job.detail = "still running at its deadline (\(deadline.formatted(.iso8601))); the relay gave up on it"
                } else {
                    job.state = .failed
                    job.detail = "the agent of \(machine) stopped reporting (killed, or it lost the relay)"
                }
                job.endedAt = now
                try db.execute(
                    sql: "UPDATE jobs SET state = ?, ended_at = ?, detail = ? WHERE id = ?", arguments: [job.state.rawValue, t, job.detail, job.id])
                ended.append(job)
            }
            return ended
        }
    }

    /// The runs `latestEnded` looks at (the condition of the index `jobs_latest_ended`, which each step repeats
    /// so that SQLite uses it).
    static let latestEndedRuns = "ended_at IS NOT NULL AND state NOT IN ('missed', 'cancelled') AND kind != 'group'"

    /// The latest ended run of each kind, per machine (none for the relay's own jobs), in the order of kind and
    /// machine (none first): a walk of the index `jobs_latest_ended` from one kind to the next (`k`), and within
    /// each from one machine to the next (`g`), taking the run that ended last of each — on a tie the first
    /// recorded, as the `GROUP BY kind, machine` this replaces did (it read every job).
    static let latestEndedSQL = """
        WITH RECURSIVE k(kind) AS (
            SELECT MIN(kind) FROM jobs WHERE \(latestEndedRuns)
            UNION ALL
            SELECT (SELECT MIN(kind) FROM jobs WHERE \(latestEndedRuns) AND kind > k.kind) FROM k WHERE k.kind IS NOT NULL
        ), g(kind, machine) AS (
            SELECT kind, (SELECT MIN(machine) FROM jobs WHERE \(latestEndedRuns) AND kind = k.kind) FROM k WHERE k.kind IS NOT NULL
            UNION ALL
            SELECT kind, (SELECT MIN(machine) FROM jobs WHERE \(latestEndedRuns) AND kind = g.kind AND machine > g.machine)
            FROM g WHERE g.machine IS NOT NULL
        ), latest(id) AS (
            SELECT (
                SELECT MIN(id) FROM jobs WHERE \(latestEndedRuns) AND kind = k.kind AND machine IS NULL AND ended_at = (
                    SELECT MAX(ended_at) FROM jobs WHERE \(latestEndedRuns) AND kind = k.kind AND machine IS NULL)
            ) FROM k WHERE k.kind IS NOT NULL
            UNION ALL
            SELECT (
                SELECT MIN(id) FROM jobs WHERE \(latestEndedRuns) AND kind = g.kind AND machine = g.machine AND ended_at = (
                    SELECT MAX(ended_at) FROM jobs WHERE \(latestEndedRuns) AND kind = g.kind AND machine = g.machine)
            ) FROM g WHERE g.machine IS NOT NULL
        )
        SELECT * FROM jobs WHERE id IN (SELECT id FROM latest) ORDER BY kind, machine
        """

    /// The latest ended run of each kind of job, per machine (missed, cancelled and configuration jobs left out):
    /// what the alert check looks at, every round.
    public func latestEnded() throws -> [Job] {
        try index.read("reading jobs") { db in
            try Row.fetchAll(db, sql: Self.latestEndedSQL).map(Self.job)
        }
    }

    /// The machines with a good backup, each with its newest one (id, start): a walk of the index
    /// `jobs_good_backup` from one machine to the next (SQLite's GROUP BY would read every entry of it).
    static let newestGoodBackupsSQL = """
        WITH RECURSIVE m(machine) AS (
            SELECT MIN(machine) FROM jobs WHERE kind = 'backup' AND state IN ('completed', 'completed with warnings') AND machine IS NOT NULL
            UNION ALL
            SELECT (SELECT MIN(machine) FROM jobs WHERE kind = 'backup' AND state IN ('completed', 'completed with warnings') AND machine > m.machine)
            FROM m WHERE m.machine IS NOT NULL
        )
        SELECT machine, (
            SELECT MAX(started_at) FROM jobs WHERE kind = 'backup' AND state IN ('completed', 'completed with warnings') AND machine = m.machine
        ) AS t, (
            SELECT id FROM jobs WHERE kind = 'backup' AND state IN ('completed', 'completed with warnings') AND machine = m.machine
            ORDER BY started_at DESC, id DESC LIMIT 1
        ) AS id
        FROM m WHERE machine IS NOT NULL
        """

    /// When each machine's last good backup (completed, with warnings or not) started.
    public func lastGoodBackups() throws -> [String: Date] {
        try index.read("reading backups") { db in
            Dictionary(
                try Row.fetchAll(db, sql: Self.newestGoodBackupsSQL).map { (($0["machine"] as String), Date(timeIntervalSince1970: $0["t"])) },
                uniquingKeysWith: { a, _ in a })
        }
    }

    // MARK: History retention

    /// History retention (`[jobs] keep_days`, applied by the relay): deletes the jobs that ended before `cutoff`,
    /// failed files and all, `batchSize` rows a transaction so that a backup committing meanwhile waits for one
    /// batch at most. Kept whatever their age: each machine's newest good backup (the overview and the
    /// missed-backup check read it), the latest ended run of each kind per machine (the alert check reads it, and
    /// an open alert names it), a backup whose recovery point is still in the catalog, and the jobs `keeping`
    /// says are still referred to (it runs inside each batch's transaction). What goes is added to `job_tallies`
    /// in the same transaction, its durations counted for the histogram's upper `bounds`, so that the job metrics
    /// stay what they were. Returns how many went.
    public func expire(
        endedBefore cutoff: Date, bounds: [Double], batchSize: Int = 5000,
        keeping: (Database, _ id: Int64, _ point: String?) throws -> Bool = { _, _, _ in false }
    ) throws -> Int {
        let c = cutoff.timeIntervalSince1970
        // These only move on to newer jobs meanwhile, which are too young to go: read once.
        let newestGood: [Int64] = try index.read("reading jobs") { db in
            try Int64.fetchAll(db, sql: "SELECT id FROM (\(Self.newestGoodBackupsSQL))")
        }
        let kept = Set(newestGood).union(try latestEnded().map(\.id))
        var deleted = 0
        // Oldest first along jobs_by_start, from where the last batch stopped (a job ends after it starts).
        var after: (start: Double, id: Int64) = (-Double.greatestFiniteMagnitude, Int64.min)
        while true {
            let (scanned, gone, last) = try index.write("deleting old jobs") { db -> (Int, Int, (Double, Int64)?) in
                let rows = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT id, started_at, point FROM jobs WHERE started_at < ? AND started_at >= ? AND (started_at > ? OR id > ?)
                        AND ended_at < ? AND state NOT IN ('queued', 'running') ORDER BY started_at, id LIMIT ?
                        """, arguments: [c, after.start, after.start, after.id, c, batchSize])
                var gone: [Int64] = []
                for row in rows {
                    let id: Int64 = row["id"]
                    let point: String? = row["point"]
                    if kept.contains(id) { continue }
                    if let point, try Self.pointHeld(db, point) { continue }
                    if try keeping(db, id, point) { continue }
                    gone.append(id)
                }
                try Self.delete(db, gone, bounds: bounds)
                return (rows.count, gone.count, rows.last.map { ($0["started_at"], $0["id"]) })
            }
            deleted += gone
            guard let last, scanned == batchSize else { return deleted }
            after = last
        }
    }

    /// Deletes the jobs `ids` (ended ones), adding them to `job_tallies` first: inside the caller's transaction.
    static func delete(_ db: Database, _ ids: [Int64], bounds: [Double]) throws {
        guard !ids.isEmpty else { return }
        let list = "[" + ids.map(String.init).joined(separator: ",") + "]"
        let filter = " AND id IN (SELECT value FROM json_each(?))"
        var retained: [[String]: Tally] = [:]
        for t in try retainedTallies(db) { retained[[t.kind, t.state]] = t }
        for t in try tallies(db, bounds: bounds, filter: filter, arguments: [list]) {
            var merged = retained[[t.kind, t.state]] ?? Tally(kind: t.kind, state: t.state, jobs: 0, durationSum: 0, buckets: bounds.map { _ in 0 })
            merged.add(t)
            try db.execute(
                sql: """
                    INSERT INTO job_tallies (kind, state, jobs, duration_sum, buckets) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (kind, state) DO UPDATE SET jobs = excluded.jobs, duration_sum = excluded.duration_sum, buckets = excluded.buckets
                    """,
                arguments: [
                    t.kind, t.state, merged.jobs, merged.durationSum,
                    "[" + merged.buckets.map(String.init).joined(separator: ",") + "]",
                ])
        }
        try db.execute(sql: "DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?))", arguments: [list])
    }

    /// Whether the recovery point (hex) is in the store's catalog.
    static func pointHeld(_ db: Database, _ point: String) throws -> Bool {
        guard let id = BlobID(hex: point) else { return false }
        return try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM recovery_points WHERE id = ?)", arguments: [id.data]) ?? false
    }

    /// The queued jobs of a machine, oldest first (its agent's plan lists them).
    public func queued(machine: String) throws -> [Int64] {
        try index.read("listing queued jobs") { db in
            try Int64.fetchAll(
                db, sql: "SELECT id FROM jobs WHERE state = 'queued' AND machine = ? ORDER BY id", arguments: [machine])
        }
    }

    /// Jobs left `running` by a process that died: failed, with the reason. Returns how many.
    @discardableResult
    public func markAbandoned(before: Date = Date()) throws -> Int {
        try index.write("closing abandoned jobs") { db in
            try db.execute(
                sql:
                    "UPDATE jobs SET state = 'failed', ended_at = ?, detail = 'the process running it ended before it did (killed, or the machine stopped)' WHERE state = 'running' AND deadline IS NULL AND started_at < ?",
                arguments: [before.timeIntervalSince1970, before.timeIntervalSince1970])
            return db.changesCount
        }
    }

    /// Jobs, newest first, filtered.
    public func list(
        machine: String? = nil, state: Job.State? = nil, kind: Job.Kind? = nil, since: Date? = nil, limit: Int = 1000
    ) throws -> [Job] {
        var clauses: [String] = []
        var args: [(any DatabaseValueConvertible)?] = []
        if let machine { clauses.append("machine = ?"); args.append(machine) }
        if let kind { clauses.append("kind = ?"); args.append(kind.rawValue) }
        if let state { clauses.append("state = ?"); args.append(state.rawValue) }
        if let since { clauses.append("started_at >= ?"); args.append(since.timeIntervalSince1970) }
        let filter = clauses.isEmpty ? "" : " WHERE " + clauses.joined(separator: " AND ")
        args.append(limit)
        return try index.read("listing jobs") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM jobs\(filter) ORDER BY started_at DESC, id DESC LIMIT ?", arguments: StatementArguments(args))
                .map(Self.job)
        }
    }

    public func job(_ id: Int64) throws -> Job {
        guard
            let job = try index.read(
                "reading a job", { db in try Row.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [id]).map(Self.job) })
        else {
            throw StoreError(.notFound, "no job has the id \(id); list them with `outpost relay jobs`")
        }
        return job
    }

    static func job(_ row: Row) -> Job {
        Job(
            id: row["id"], kind: Job.Kind(rawValue: row["kind"]) ?? .backup, machine: row["machine"],
            state: Job.State(rawValue: row["state"]) ?? .failed, startedAt: Date(timeIntervalSince1970: row["started_at"]),
            endedAt: (row["ended_at"] as Double?).map(Date.init(timeIntervalSince1970:)), bytes: row["bytes"], files: row["files"],
            detail: row["detail"],
            failedFiles: (try? JSONDecoder().decode([Job.FailedFile].self, from: Data((row["failed_files"] as String).utf8))) ?? [],
            trigger: row["trigger"], point: row["point"], deadline: (row["deadline"] as Double?).map(Date.init(timeIntervalSince1970:)),
            reportedAt: (row["reported_at"] as Double?).map(Date.init(timeIntervalSince1970:)))
    }
}
