import Foundation
import Logging
import OutpostArchive
import OutpostClient
import OutpostCore
import OutpostHTTP
import Synchronization

/// How an agent runs (`outpost agent run`; client.toml's `[agent]` table).
public struct AgentOptions: Sendable {
    /// The agent's state file (last plan, last scheduled run).
    public var statePath: String
    /// Hooks this machine runs: the exact command lines a group may name. Any other is refused (a relay that
    /// was taken over must not run commands on every machine).
    public var allowedHooks: [String]
    /// The machine's local time zone, in which schedules run.
    public var timeZone: TimeZone = .current
    /// Seconds a plan request waits on the relay for a change (the long poll).
    public var pollWait = 25
    /// The longest the scheduler sleeps before it looks at the clock again, so that a clock that jumped (NTP, a
    /// suspended machine, a test's shifted clock) is noticed within it.
    public var maxSleep: Double = 30
    /// Seconds between progress reports of a running backup.
    public var reportInterval: Double = 30
    /// Files read at once (nil: the backup command's default over a network).
    public var workers: Int?

    public init(statePath: String, allowedHooks: [String]) {
        self.statePath = statePath
        self.allowedHooks = allowedHooks
    }
}

/// The agent on a protected machine (issue 12): follows the plan its relay gives it (a long poll), backs up at
/// the planned times in the machine's local time, runs the group's hooks, and reports each job's start,
/// progress and end. It keeps going through relay restarts and network loss: the plan it last had stays in
/// force, and a time that passed while the relay could not be reached runs once when it can.
public final class Agent: Sendable {
    let machine: String
    let client: RelayClient
    let options: AgentOptions
    let clock: WallClock
    let logger: Logger
    private let waker = Waker()
    private let state: Mutex<AgentState>
    /// Queued jobs already tried (claimed, or refused), so that a plan not yet renewed does not run one twice.
    private let attempted = Mutex<Set<Int64>>([])

    public init(machine: String, client: RelayClient, options: AgentOptions, clock: WallClock = .fromEnvironment(), logger: Logger) throws {
        self.machine = machine
        self.client = client
        self.options = options
        self.clock = clock
        self.logger = logger
        state = Mutex(try AgentState.load(path: options.statePath))
    }

    /// Runs until cancelled; ends with an error only when the relay refuses the machine's credential.
    public func run() async throws {
        if let plan = state.withLock({ $0.plan }) {
            logger.info("following the last plan known until the relay answers", metadata: planMetadata(plan))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.pollLoop() }
            group.addTask { await self.scheduleLoop() }
            try await group.next()
            group.cancelAll()
        }
    }

    // MARK: The plan

    private var identity: [(String, String)] {
        [
            (AgentAPI.versionHeader, OutpostVersion.string), (AgentAPI.timeZoneHeader, options.timeZone.identifier),
            (AgentAPI.hostHeader, ProcessInfo.processInfo.hostName),
        ]
    }

    private func pollLoop() async throws {
        var backoff = 1.0
        while !Task.isCancelled {
            do {
                let known = state.withLock { $0.plan?.tag }
                if let plan = try await client.plan(known: known, wait: options.pollWait, identity: identity) {
                    adopt(plan)
                    waker.wake()
                }
                backoff = 1
            } catch let e as OutpostError where e.code == .unauthorized {
                logger.critical("the relay refused this machine's credential; the agent stops", metadata: ["reason": "\(e.message)"])
                throw e
            } catch is CancellationError {
                return
            } catch {
                logger.warning(
                    "cannot get the plan from the relay; the last plan stays in force",
                    metadata: ["reason": "\(error)", "retry_in_s": "\(Int(backoff))"])
                try? await Task.sleep(for: .seconds(backoff))
                backoff = min(backoff * 2, 60)
            }
        }
    }

    private func adopt(_ plan: AgentAPI.Plan) {
        let now = clock.now()
        state.withLock { s in
            if s.schedule != plan.schedule || s.scheduleSince == nil {
                s.schedule = plan.schedule
                s.scheduleSince = now
            }
            s.plan = plan
        }
        attempted.withLock { a in a.formIntersection(plan.queued) }
        saveState()
        logger.info("plan received", metadata: planMetadata(plan))
    }

    private func planMetadata(_ plan: AgentAPI.Plan) -> Logger.Metadata {
        [
            "group": "\(plan.group ?? "-")", "schedule": "\(plan.schedule ?? "-")", "paths": "\(plan.paths.joined(separator: ","))",
            "queued": "\(plan.queued.count)",
        ]
    }

    private func saveState() {
        let s = state.withLock { $0 }
        do { try s.save(path: options.statePath) } catch {
            logger.error("cannot save the agent's state", metadata: ["path": "\(options.statePath)", "reason": "\(error)"])
        }
    }

    // MARK: The schedule

    private func scheduleLoop() async {
        var backoff = 5.0
        while !Task.isCancelled {
            let (plan, since, lastRun) = state.withLock { ($0.plan, $0.scheduleSince, $0.lastRun) }
            guard let plan else {
                await waker.wait(seconds: options.maxSleep)
                continue
            }
            // A `relay backup-now` first.
            if let id = plan.queued.first(where: { id in !attempted.withLock { $0.contains(id) } }) {
                attempted.withLock { _ = $0.insert(id) }
                if await runJob(trigger: "now", claim: id, plan: plan) == .relayUnreachable {
                    attempted.withLock { _ = $0.remove(id) }
                    await waker.wait(seconds: backoff)
                    backoff = min(backoff * 2, 300)
                }
                continue
            }
            guard let spec = plan.schedule, let schedule = try? BackupSchedule.parse(spec) else {
                await waker.wait(seconds: options.maxSleep)
                continue
            }
            let now = clock.now()
            let from = max(lastRun ?? .distantPast, since ?? now)
            if schedule.due(since: from, now: now, in: options.timeZone) != nil {
                switch await runJob(trigger: "schedule", claim: nil, plan: plan) {
                case .reachedRelay:
                    state.withLock { $0.lastRun = now }
                    saveState()
                    backoff = 5
                case .relayUnreachable:
                    // Due still: it runs once the relay answers.
                    await waker.wait(seconds: backoff)
                    backoff = min(backoff * 2, 300)
                }
                continue
            }
            let next = schedule.next(after: now, in: options.timeZone)
            await waker.wait(seconds: min(next.timeIntervalSince(now), options.maxSleep))
        }
    }

    enum Outcome: Equatable { case reachedRelay, relayUnreachable }

    // MARK: A backup job

    /// One backup as a relay job: claimed or started on the relay, the pre-hook, the backup, the post-hook, the
    /// end reported.
    func runJob(trigger: String, claim: Int64?, plan: AgentAPI.Plan) async -> Outcome {
        let job: Int64
        do { job = try await client.startJob(trigger: trigger, claim: claim) } catch let e as OutpostError where e.code == .unreachable {
            logger.warning("the relay cannot be reached; the backup waits for it", metadata: ["reason": "\(e.message)"])
            return .relayUnreachable
        } catch {
            logger.error("the relay refused to start a backup job", metadata: ["trigger": "\(trigger)", "reason": "\(error)"])
            return .reachedRelay
        }
        logger.info("backup started", metadata: ["job": "\(job)", "trigger": "\(trigger)"])
        // Lines logged during the backup carry the job's id (`--log-format json`).
        let report = await LogContext.$job.withValue(job) { await backup(job: job, plan: plan) }
        // Reported even when the agent is being stopped (a task of its own is not cancelled with this one).
        let client = self.client
        do { try await Task { try await client.reportJob(job, report) }.value } catch {
            // The relay fails the job when its silence lasts; the backup itself is not run again.
            logger.error("cannot report the job's end to the relay", metadata: ["job": "\(job)", "reason": "\(error)"])
        }
        logger.info(
            "backup ended", metadata: ["job": "\(job)", "state": "\(report.state ?? "?")", "detail": "\(report.detail ?? "")"])
        return report.state == "failed" && report.detail?.hasPrefix(Self.unreachablePrefix) == true ? .relayUnreachable : .reachedRelay
    }

    static let unreachablePrefix = "the relay could not be reached during the backup"

    private func hookEnvironment(job: Int64, plan: AgentAPI.Plan, phase: String) -> [String: String] {
        ["OUTPOST_MACHINE": machine, "OUTPOST_JOB": String(job), "OUTPOST_GROUP": plan.group ?? "", "OUTPOST_PHASE": phase]
    }

    /// Runs a hook the machine allows; nil when it succeeded, else what went wrong, for the job record.
    private func hook(_ command: String, phase: String, job: Int64, plan: AgentAPI.Plan, extra: [String: String] = [:]) async -> String? {
        let name = phase == "before" ? "pre-hook" : "post-hook"
        guard options.allowedHooks.contains(command) else {
            return
                "the group's \(name) \(Terminal.quoted(command)) is not allowed on this machine: add it to allowed_hooks in the [agent] table of client.toml, or remove it from the group"
        }
        let timeout = Double(plan.hooks?.timeoutSeconds ?? 600)
        do {
            let o = try await HookRunner().run(
                command, timeout: timeout, environment: hookEnvironment(job: job, plan: plan, phase: phase).merging(extra) { _, b in b })
            if o.succeeded { return nil }
            let output = o.output.trimmingCharacters(in: .whitespacesAndNewlines)
            let what =
                o.status.map { "exited with status \($0)" } ?? "was stopped at its time-out of \(Int(timeout)) s"
            return "the \(name) \(Terminal.quoted(command)) \(what)" + (output.isEmpty ? "" : "; its output:\n\(output)")
        } catch {
            return "the \(name) \(Terminal.quoted(command)) could not be started: \(error)"
        }
    }

    private func backup(job: Int64, plan: AgentAPI.Plan) async -> AgentAPI.JobReport {
        func failed(_ detail: String) -> AgentAPI.JobReport { AgentAPI.JobReport(state: "failed", bytes: 0, files: 0, detail: detail) }
        guard !plan.paths.isEmpty else {
            return failed(
                "machine \(machine) is in no protection group with paths: nothing to back up; add it to one with `outpost relay group edit GROUP --machine \(machine) …`"
            )
        }
        if let before = plan.hooks?.before, let problem = await hook(before, phase: "before", job: job, plan: plan) {
            return failed(problem)
        }
        var report: AgentAPI.JobReport
        do {
            let repository = try await RemoteRepository(client: client)
            repository.job.store(job, ordering: .relaxed)
            var o = BackupOptions(machine: machine, paths: plan.paths, exclusions: ExclusionList(plan.excludes))
            o.workers = options.workers ?? ProcessInfo.processInfo.activeProcessorCount * 3
            let archiver = Archiver(repository: repository, options: o)
            let progress = Task { [client, interval = options.reportInterval] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(interval))
                    if Task.isCancelled { break }
                    let files = archiver.progress.files.load(ordering: .relaxed)
                    let bytes = archiver.progress.bytesRead.load(ordering: .relaxed)
                    try? await client.reportJob(job, AgentAPI.JobReport(state: nil, bytes: bytes, files: files, detail: nil))
                }
            }
            defer { progress.cancel() }
            let result = try await archiver.run()
            let s = result.point.point.summary
            let failures = result.failures.map { AgentAPI.FailedFile(path: $0.path, reason: $0.reason) }
            report = AgentAPI.JobReport(
                state: failures.isEmpty ? "completed" : "completed with warnings", bytes: s.bytesRead,
                files: s.filesNew + s.filesChanged + s.filesUnchanged,
                detail: "recovery point \(result.point.id.shortHex)"
                    + (failures.isEmpty ? "" : "; \(failures.count) \(failures.count == 1 ? "entry" : "entries") could not be backed up"),
                failedFiles: Array(failures.prefix(AgentAPI.maxFailedFiles)))
        } catch let e as OutpostError where e.code == .unreachable {
            report = failed("\(Self.unreachablePrefix): \(e.message)")
        } catch is CancellationError {
            report = AgentAPI.JobReport(state: "cancelled", bytes: 0, files: 0, detail: "the agent was stopped during the backup")
        } catch {
            report = failed("the backup failed: \(error)")
        }
        if let after = plan.hooks?.after,
            let problem = await hook(after, phase: "after", job: job, plan: plan, extra: ["OUTPOST_RESULT": report.state ?? ""])
        {
            if report.state == "completed" { report.state = "completed with warnings" }
            report.detail = [report.detail, problem].compactMap { $0 }.joined(separator: "; ")
        }
        return report
    }
}
