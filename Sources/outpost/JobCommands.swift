import ArgumentParser
import Foundation
import OutpostCore
import OutpostRelay
import OutpostStore

extension RelayCommand {
    /// `outpost relay jobs` (issue 12): what ran, and how it ended.
    struct Jobs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the relay's jobs, newest first: backups committed, forwards, prunes, gcs.",
            discussion:
                "States: running, completed, completed with warnings, failed (a job a killed relay left running is failed when it starts again).")
        @OptionGroup var relay: RelayOptions
        @Option(help: "Only this machine's jobs.") var machine: String?
        @Option(help: "Only jobs in this state (running, completed, \"completed with warnings\", failed, …).") var state: String?
        @Option(help: ArgumentHelp("Only jobs started at or after this time (YYYY-MM-DD or ISO 8601).", valueName: "time")) var since: String?
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let wanted = try state.map { s in
                guard let st = Job.State(rawValue: s) else {
                    throw ValidationError("--state must be one of \(Job.State.allCases.map(\.rawValue).joined(separator: ", ")), not \(s)")
                }
                return st
            }
            let after = try since.map(parseSince)
            let store = try Store.open(at: dir.storePath, purpose: "`outpost relay jobs`")
            let jobs = try JobLog(store: store).list(machine: machine, state: wanted, since: after)
            if json { try printJSON(jobs); return }
            if jobs.isEmpty { print("no jobs"); return }
            for j in jobs { print(Self.line(j)) }
        }

        static func line(_ j: Job) -> String {
            let time = j.startedAt.formatted(
                .iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: false).timeSeparator(.colon))
            let took = j.endedAt.map { String(format: "%.1f s", $0.timeIntervalSince(j.startedAt)) } ?? "-"
            return
                "\(j.id)  \(time)  \(j.kind.rawValue.padding(toLength: 7, withPad: " ", startingAt: 0))  \((j.machine ?? "-").padding(toLength: 14, withPad: " ", startingAt: 0))  \(j.state.rawValue)  \(took)  \(formatBytes(j.bytes))\(j.detail.map { "  \($0)" } ?? "")"
        }
    }

    struct JobDetail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "job", abstract: "Show one job: what it did, and the files that failed, with the reasons.")
        @OptionGroup var relay: RelayOptions
        @Argument(help: "The job's id (from `outpost relay jobs`).") var id: Int64
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let job = try JobLog(store: try Store.open(at: dir.storePath, purpose: "`outpost relay job`")).job(id)
            if json { try printJSON(job); return }
            print(Jobs.line(job))
            if let t = job.trigger { print("  trigger: \(t)") }
            if let p = job.point { print("  recovery point: \(p)") }
            if let d = job.deadline, job.endedAt == nil { print("  deadline: \(d.formatted(.iso8601))") }
            for f in job.failedFiles { print("  failed: \(Terminal.escaped(f.path)): \(Terminal.escaped(f.reason))") }
        }
    }

    /// `outpost relay backup-now` (issue 12): a backup job queued for the machine's agent.
    struct BackupNow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "backup-now",
            abstract: "Ask a machine's agent to back up at once (its group's paths and hooks).",
            discussion: """
                The job waits, queued, until the machine's agent takes it (within seconds when the agent runs; it fails after                 [jobs] backup_now_minutes if none does). With --wait, the command follows the job to its end. Exit 0: queued                 (with --wait: completed); 3: completed with warnings; 14: unknown machine; 20: the job failed or was                 cancelled; 21: --wait ran out first (the job goes on).
                """)
        @OptionGroup var relay: RelayOptions
        @Option(help: "The machine to back up.") var machine: String
        @Flag(help: "Wait for the job to end, and exit with its outcome.") var wait = false
        @Option(help: ArgumentHelp("With --wait: give up waiting after this many seconds (default 3600).", valueName: "seconds")) var timeout = 3600

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let store = try Store.open(at: dir.storePath, purpose: "`outpost relay backup-now`")
            let minutes = try dir.configuration().jobs.backupNowMinutes
            let id = try AgentDesk(store: store).backupNow(machine: machine, claimWithin: Double(minutes) * 60)
            print("job \(id): backup of \(machine) queued for its agent")
            guard wait else { return }
            let log = JobLog(store: store)
            let until = ContinuousClock.now + .seconds(timeout)
            var shown = Job.State.queued
            while ContinuousClock.now < until {
                let job = try log.job(id)
                if job.state != shown {
                    shown = job.state
                    print("job \(id): \(job.state.rawValue)")
                }
                switch job.state {
                case .queued, .running: try await Task.sleep(for: .milliseconds(500))
                case .completed:
                    print(Jobs.line(job))
                    return
                case .completedWithWarnings:
                    print(Jobs.line(job))
                    throw CommandExit(code: .partialBackup)
                case .failed, .cancelled, .missed:
                    print(Jobs.line(job))
                    throw OutpostError(.remote, "job \(id) (backup of \(machine)) \(job.state.rawValue): \(job.detail ?? "no reason recorded")")
                }
            }
            throw OutpostError(.unreachable, "job \(id) has not ended after \(timeout) s; it goes on: follow it with `outpost relay job \(id)`")
        }
    }
}

/// Runs a relay-host command as a job (relay jobs): recorded running, then completed, or failed with the error
/// (thrown on: the command's exit code is unchanged). The job is recorded in the relay's store at `dir`.
func asRelayJob<T>(_ kind: Job.Kind, _ dir: RelayDataDirectory, machine: String? = nil, _ body: () async throws -> T) async throws -> T {
    guard let store = try? Store.open(at: dir.storePath, purpose: "recording a job") else { return try await body() }
    return try await JobLog(store: store).run(kind, machine: machine, body)
}

/// `--since`: an ISO 8601 time, or a day (YYYY-MM-DD, from its start in UTC).
func parseSince(_ text: String) throws -> Date {
    if let d = try? Date(text, strategy: .iso8601) { return d }
    if let d = try? Date(text + "T00:00:00Z", strategy: .iso8601) { return d }
    throw ValidationError("--since takes YYYY-MM-DD or an ISO 8601 time, not \(text)")
}
