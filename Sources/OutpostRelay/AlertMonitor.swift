import Foundation
import GRDB
import Logging
import OutpostCore
import OutpostStore
import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The relay watching itself (issue 12; docs/alerts.md), inside `relay serve`, every `check_interval_seconds`:
/// closes agents' jobs that will not end by themselves, opens and clears alerts (a job failed or with warnings, a
/// missed backup, damage found, low disk, and what the forwarder adds: forwarding lag, an unreachable vault), and
/// delivers each opening and clearing to the configured channels; and, at most once an hour, deletes the history
/// older than `[jobs] keep_days` (`HistoryRetention`).
public final class AlertMonitor: Service, Sendable {
    let store: Store
    let settings: AlertSettings
    let jobs: JobSettings
    let clock: WallClock
    let logger: Logger
    /// The forwarder's conditions (forwarding lag, vault reachability); the relay itself knows nothing of the vault.
    let providers: [@Sendable (Date) async -> [AlertCondition]]
    let dispatcher: AlertDispatcher?
    /// The relay's own time zone, for machines whose agent never said its own.
    let timeZone: TimeZone
    /// When history retention last ran (nil: not yet in this process).
    let historyRan = Mutex<Date?>(nil)

    public init(
        store: Store, settings: AlertSettings, jobs: JobSettings, clock: WallClock, logger: Logger, dispatcher: AlertDispatcher?,
        providers: [@Sendable (Date) async -> [AlertCondition]] = [], timeZone: TimeZone = .current
    ) {
        self.store = store; self.settings = settings; self.jobs = jobs; self.clock = clock; self.logger = logger
        self.dispatcher = dispatcher; self.providers = providers; self.timeZone = timeZone
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    await self.checkOnce()
                    try await Task.sleep(for: .seconds(self.settings.checkIntervalSeconds))
                }
            }
        } catch is CancellationError {}
    }

    /// One round: sweep, evaluate, reconcile, deliver. Failures are logged; the next round tries again.
    public func checkOnce() async {
        let now = clock.now()
        do {
            for job in try JobLog(store: store).sweep(now: now, silence: Double(jobs.agentSilenceMinutes) * 60) {
                logger.warning(
                    "job closed by the relay", metadata: ["job": "\(job.id)", "state": "\(job.state.rawValue)", "detail": "\(job.detail ?? "")"])
            }
            var holding = try conditions(now: now)
            for provider in providers { holding += await provider(now) }
            let kinds = Set(Alert.Kind.allCases).subtracting([.test])
            let changes = try AlertBook(store: store).reconcile(holding, kinds: kinds, channels: dispatcher?.channels ?? [], now: now)
            for a in changes.opened {
                logger.warning(
                    "alert opened",
                    metadata: ["alert": "\(a.id)", "kind": "\(a.kind.rawValue)", "subject": "\(a.subject)", "message": "\(a.message)"])
                if a.kind == .missedBackup {
                    // The missed run as a job of the machine (relay jobs --state missed).
                    _ = try? JobLog(store: store).record(
                        .backup, machine: a.subject, state: .missed, startedAt: now, endedAt: now, bytes: 0, files: 0, detail: a.message)
                }
            }
            for a in changes.cleared {
                logger.notice("alert cleared", metadata: ["alert": "\(a.id)", "kind": "\(a.kind.rawValue)", "subject": "\(a.subject)"])
            }
        } catch {
            logger.error("the alert check failed; tried again at the next", metadata: ["reason": "\(error)"])
        }
        applyHistoryRetention(now: now)
        await dispatcher?.deliverDue(now: clock.now())
    }

    /// History retention, after the alerts are reconciled (the open ones name the jobs to keep), at most once an
    /// hour: the first round of `relay serve`, then the first round an hour or more after the last.
    func applyHistoryRetention(now: Date) {
        let due = historyRan.withLock { last in
            if let last, now.timeIntervalSince(last) < 3600, now >= last { return false }
            last = now
            return true
        }
        guard due else { return }
        do {
            let r = try HistoryRetention(store: store).apply(keepDays: jobs.keepDays, now: now)
            if r.jobs + r.alerts > 0 {
                logger.info(
                    "history older than [jobs] keep_days deleted",
                    metadata: ["jobs": "\(r.jobs)", "alerts": "\(r.alerts)", "keep_days": "\(r.keepDays)"])
            }
        } catch {
            logger.error("deleting the history older than [jobs] keep_days failed; tried again in an hour", metadata: ["reason": "\(error)"])
        }
    }

    /// The relay's own conditions now.
    func conditions(now: Date) throws -> [AlertCondition] {
        try jobConditions() + missedBackups(now: now) + diskConditions()
    }

    /// The latest ended run of each kind of job (per machine) that failed or finished with warnings.
    func jobConditions() throws -> [AlertCondition] {
        let latest = try JobLog(store: store).latestEnded()
        return latest.compactMap { j in
            let subject = j.kind.rawValue + (j.machine.map { ":" + $0 } ?? "")
            let what = j.kind.rawValue + (j.machine.map { " of \($0)" } ?? "")
            let why = j.detail.map { ": \($0.prefix(500))" } ?? ""
            switch j.state {
            case .failed where j.kind == .check || j.kind == .verify:
                return AlertCondition(
                    .damage, j.kind.rawValue, "`relay \(j.kind == .check ? "check" : "verify-vault")` found a problem (job \(j.id))\(why)")
            case .failed: return AlertCondition(.jobFailed, subject, "the \(what) failed (job \(j.id))\(why)")
            case .completedWithWarnings: return AlertCondition(.jobWarnings, subject, "the \(what) finished with warnings (job \(j.id))\(why)")
            default: return nil
            }
        }
    }

    /// Machines of a group with a schedule that have no good backup since a planned time older than the grace.
    func missedBackups(now: Date) throws -> [AlertCondition] {
        let members = try ProtectionGroups(store: store).memberships()
        if members.isEmpty { return [] }
        let contacts = try AgentDesk(store: store, clock: clock).contacts()
        let lastGood = try JobLog(store: store).lastGoodBackups()
        // A backup under way that started for the planned time is not a missed one (a long backup runs past its grace).
        var running: [String: Date] = [:]
        for j in try JobLog(store: store).list(state: .running, kind: .backup) {
            if let m = j.machine { running[m] = max(running[m] ?? .distantPast, j.startedAt) }
        }
        let grace = Double(settings.missedGraceMinutes) * 60
        return members.compactMap { m in
            guard let schedule = try? BackupSchedule.parse(m.group.schedule) else { return nil }
            let zone = contacts[m.machine].flatMap { TimeZone(identifier: $0.timeZone) } ?? timeZone
            // A backup that started a little before its planned time (the clocks of agent and relay differ) covers it.
            let since = max(m.joinedAt, (lastGood[m.machine] ?? .distantPast).addingTimeInterval(300))
            guard let slot = schedule.due(since: since, now: now.addingTimeInterval(-grace), in: zone) else { return nil }
            if let started = running[m.machine], started >= slot.addingTimeInterval(-300) { return nil }
            let last = lastGood[m.machine].map { "its last good backup started \($0.formatted(.iso8601))" } ?? "it has no good backup yet"
            let agent = contacts[m.machine].map { "its agent was last seen \($0.lastSeen.formatted(.iso8601))" } ?? "no agent has asked for its plan"
            return AlertCondition(
                .missedBackup, m.machine,
                "machine \(m.machine) missed its backup planned for \(slot.formatted(.iso8601)) (group \(m.group.name), \(m.group.schedule)); \(last); \(agent)"
            )
        }
    }

    func diskConditions() -> [AlertCondition] {
        guard settings.minFreePercent > 0 else { return [] }
        var s = statvfs()
        guard statvfs(store.layout.root, &s) == 0, s.f_blocks > 0 else { return [] }
        let free = Double(s.f_bavail) / Double(s.f_blocks) * 100
        guard free < Double(settings.minFreePercent) else { return [] }
        let bytes = Int64(s.f_bavail) * Int64(s.f_frsize)
        return [
            AlertCondition(
                .diskLow, "store",
                String(
                    format: "the relay's store at %@ has %.1f%% free (%lld MiB), below [alerts] min_free_percent %d: free space, or prune",
                    store.layout.root, free, bytes >> 20, settings.minFreePercent))
        ]
    }
}
