import Foundation
import GRDB
import OutpostCore

/// A job of the relay (issue 12): a backup committed, a forward, a prune, a gc, a check, a restore or a rebuild,
/// with when it ran, how it ended and what it moved.
public struct Job: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable { case backup, forward, prune, gc, check, verify, restore, rebuild }
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
            let value = try await body()
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
            let value = try body()
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

    /// Jobs left `running` by a process that died: failed, with the reason. Returns how many.
    @discardableResult
    public func markAbandoned(before: Date = Date()) throws -> Int {
        try index.write("closing abandoned jobs") { db in
            try db.execute(
                sql:
                    "UPDATE jobs SET state = 'failed', ended_at = ?, detail = 'the process running it ended before it did (killed, or the machine stopped)' WHERE state = 'running' AND started_at < ?",
                arguments: [before.timeIntervalSince1970, before.timeIntervalSince1970])
            return db.changesCount
        }
    }

    /// Jobs, newest first, filtered.
    public func list(machine: String? = nil, state: Job.State? = nil, since: Date? = nil, limit: Int = 1000) throws -> [Job] {
        var clauses: [String] = []
        var args: [(any DatabaseValueConvertible)?] = []
        if let machine { clauses.append("machine = ?"); args.append(machine) }
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
            failedFiles: (try? JSONDecoder().decode([Job.FailedFile].self, from: Data((row["failed_files"] as String).utf8))) ?? [])
    }
}
