import Foundation
import Logging
import OutpostCore
import OutpostStore
import Synchronization
import Testing

@testable import OutpostRelay

/// The relay watching itself: which jobs raise an alert, when a machine of a group has missed its backup (in
/// its agent's time zone, after the grace, counted from when it joined), and a round of `checkOnce` on a clock
/// the test moves.
@Suite struct AlertMonitorTests {
    /// 2026-01-14 12:00 UTC (New York is UTC-5 then): the group is made and its machines join.
    static let join = Date(timeIntervalSince1970: 1_768_392_000)
    /// The group's 21:00 in UTC, and in New York (02:00 UTC the next day).
    static let slotUTC = join + 9 * 3600
    static let slotNewYork = join + 14 * 3600
    static let utc = TimeZone(identifier: "UTC")!

    /// A wall clock set by writing its offset file (`WallClock(offsetFile:)`, as `relay serve` under test).
    final class MovableClock: Sendable {
        let file = NSTemporaryDirectory() + "/outpost-clock-\(UUID().uuidString.prefix(8))"
        var clock: WallClock { WallClock(offsetFile: file) }
        func set(_ date: Date) throws {
            try "\(date.timeIntervalSince(Date()))".write(toFile: file, atomically: true, encoding: .utf8)
        }
        deinit { try? FileManager.default.removeItem(atPath: file) }
    }

    func monitor(
        _ f: AgentsFixture, clock: WallClock = .system, grace: Int = 60, jobs: JobSettings = JobSettings(),
        providers: [@Sendable (Date) async -> [AlertCondition]] = []
    ) -> AlertMonitor {
        var settings = AlertSettings()
        settings.missedGraceMinutes = grace
        settings.minFreePercent = 0  // this machine's disk is not under test
        return AlertMonitor(
            store: f.store, settings: settings, jobs: jobs, clock: clock, logger: Logger(label: "alert-monitor-test"), dispatcher: nil,
            providers: providers, timeZone: Self.utc)
    }

    // MARK: Jobs

    @Test func theLatestRunOfEachJobDecidesItsAlert() throws {
        let f = try AgentsFixture()
        let log = JobLog(store: f.store)
        let t = Self.join
        func rec(_ kind: Job.Kind, _ machine: String?, _ state: Job.State, _ end: TimeInterval, _ detail: String? = nil) throws -> Int64 {
            try log.record(kind, machine: machine, state: state, startedAt: t, endedAt: t + end, bytes: 0, files: 0, detail: detail)
        }
        let failed = try rec(.backup, "pc1", .failed, 10, "disk full")
        _ = try rec(.backup, "pc2", .completedWithWarnings, 10)
        _ = try rec(.check, nil, .failed, 10, "pack 3f: bad checksum")
        _ = try rec(.verify, nil, .failed, 10)
        _ = try rec(.prune, nil, .failed, 10)
        _ = try rec(.prune, nil, .completed, 20)

        let m = monitor(f)
        let conditions = try m.jobConditions()
        let byKey = Dictionary(uniqueKeysWithValues: conditions.map { ("\($0.kind.rawValue) \($0.subject)", $0.message) })
        #expect(Set(byKey.keys) == ["job-failed backup:pc1", "job-warnings backup:pc2", "damage check", "damage verify"])
        #expect(byKey["job-failed backup:pc1"] == "the backup of pc1 failed (job \(failed)): disk full")
        #expect(byKey["damage check"]?.contains("`relay check` found a problem") == true)
        #expect(byKey["damage check"]?.hasSuffix(": pack 3f: bad checksum") == true)
        #expect(byKey["damage verify"]?.contains("`relay verify-vault` found a problem") == true)

        _ = try rec(.backup, "pc1", .completed, 30)
        _ = try rec(.check, nil, .completed, 30)
        #expect(Set(try m.jobConditions().map(\.subject)) == ["backup:pc2", "verify"], "a completed run clears its alert")
    }

    // MARK: Missed backups

    @Test func aMissedBackupIsCountedInTheAgentsTimeZone() throws {
        let f = try AgentsFixture()
        try f.machines("pc1", "pc2", now: Self.join)
        try f.group("g", ["pc1", "pc2"], now: Self.join)
        try AgentDesk(store: f.store, clock: .system).seen(machine: "pc1", version: "1", timeZone: "America/New_York", hostname: "pc1")
        let m = monitor(f)

        // 02:30 UTC: an hour and a half past 21:00 in UTC (pc2, no agent: the relay's zone), half an hour past in New York.
        let early = try m.missedBackups(now: Self.slotNewYork + 1800)
        #expect(early.map(\.subject) == ["pc2"])
        #expect(early.first?.message.contains("planned for 2026-01-14T21:00:00Z") == true, "\(early.first?.message ?? "")")
        #expect(early.first?.message.contains("it has no good backup yet; no agent has asked for its plan") == true)

        let late = try m.missedBackups(now: Self.slotNewYork + 3600 + 60)
        #expect(late.map(\.subject) == ["pc1", "pc2"])
        #expect(late.first?.message.contains("planned for 2026-01-15T02:00:00Z (group g, daily 21:00)") == true, "\(late.first?.message ?? "")")
        #expect(late.first?.message.contains("its agent was last seen") == true)
    }

    @Test func aBackupIsMissedOnlyAfterTheGrace() throws {
        let f = try AgentsFixture()
        try f.machines("pc1", now: Self.join)
        try f.group("g", ["pc1"], now: Self.join)
        #expect(try monitor(f, grace: 60).missedBackups(now: Self.slotUTC + 3599).isEmpty)
        #expect(try monitor(f, grace: 60).missedBackups(now: Self.slotUTC + 3601).map(\.subject) == ["pc1"])
        #expect(try monitor(f, grace: 0).missedBackups(now: Self.slotUTC + 1).map(\.subject) == ["pc1"])
    }

    @Test func timesBeforeAMachineJoinedItsGroupAreNotMissed() throws {
        let f = try AgentsFixture()
        try f.machines("pc1", "pc2", now: Self.join)
        try f.group("g", ["pc1"], now: Self.join)
        // pc2 joins at 22:30 UTC, after that day's 21:00; pc1 stays a member since noon.
        try ProtectionGroups(store: f.store).edit("g", .init(machines: ["pc1", "pc2"]), file: RetentionPolicy(), now: Self.slotUTC + 5400)
        let m = monitor(f)
        #expect(try m.missedBackups(now: Self.join + 12 * 3600).map(\.subject) == ["pc1"])
        #expect(try m.missedBackups(now: Self.slotUTC + 86400 + 3601).map(\.subject) == ["pc1", "pc2"], "the next day's 21:00 counts")
    }

    @Test func aGoodBackupCoversItsSlotEvenStartedAFewMinutesEarly() throws {
        let f = try AgentsFixture()
        try f.machines("early", "tooEarly", "failed", "warnings", now: Self.join)
        try f.group("g", ["early", "tooEarly", "failed", "warnings"], now: Self.join)
        let log = JobLog(store: f.store)
        func backup(_ machine: String, _ state: Job.State, startedAt: Date) throws {
            _ = try log.record(
                .backup, machine: machine, state: state, startedAt: startedAt, endedAt: startedAt + 600, bytes: 1, files: 1, detail: nil)
        }
        try backup("early", .completed, startedAt: Self.slotUTC - 120)
        try backup("tooEarly", .completed, startedAt: Self.slotUTC - 600)
        try backup("failed", .failed, startedAt: Self.slotUTC)
        try backup("warnings", .completedWithWarnings, startedAt: Self.slotUTC + 300)
        #expect(try monitor(f).missedBackups(now: Self.slotUTC + 7200).map(\.subject) == ["failed", "tooEarly"])
    }

    /// A long backup that started for its planned time runs past the grace: not missed; one started before the
    /// time (for the previous one) does not cover it.
    @Test func aBackupStillRunningForItsSlotIsNotMissed() throws {
        let f = try AgentsFixture()
        try f.machines("long", "stale", now: Self.join)
        try f.group("g", ["long", "stale"], now: Self.join)
        let log = JobLog(store: f.store)
        _ = try log.begin(.backup, machine: "long", trigger: "schedule", claiming: nil, deadline: Self.slotUTC + 86400, now: Self.slotUTC + 5)
        _ = try log.begin(.backup, machine: "stale", trigger: "schedule", claiming: nil, deadline: Self.slotUTC + 86400, now: Self.join + 60)
        #expect(try monitor(f).missedBackups(now: Self.slotUTC + 7200).map(\.subject) == ["stale"])
    }

    @Test func machinesInNoGroupOrAGroupWithoutMembersAreNeverLate() throws {
        let f = try AgentsFixture()
        try f.machines("pc1", now: Self.join)
        #expect(try monitor(f).missedBackups(now: Self.slotUTC + 86400 * 3).isEmpty)
        try f.group("empty", [], now: Self.join)
        #expect(try monitor(f).missedBackups(now: Self.slotUTC + 86400 * 3).isEmpty)
    }

    // MARK: A round of checks

    @Test func checkOnceRecordsOneMissedJobWhenTheAlertOpensAndClearsItAfterAGoodBackup() async throws {
        let f = try AgentsFixture()
        try f.machines("pc1", now: Self.join)
        try f.group("g", ["pc1"], now: Self.join)
        let moving = MovableClock()
        let m = monitor(f, clock: moving.clock)
        let book = AlertBook(store: f.store)
        let log = JobLog(store: f.store)

        try moving.set(Self.slotUTC + 1800)
        await m.checkOnce()
        #expect(try book.open().isEmpty, "within the grace")

        try moving.set(Self.slotUTC + 3700)
        await m.checkOnce()
        let open = try book.open()
        #expect(open.map(\.kind) == [.missedBackup] && open.map(\.subject) == ["pc1"])
        let missed = try log.list(state: .missed)
        #expect(missed.count == 1 && missed.first?.machine == "pc1" && missed.first?.kind == .backup)
        #expect(missed.first?.detail == open.first?.message)

        try moving.set(Self.slotUTC + 4000)
        await m.checkOnce()
        #expect(try book.open().map(\.id) == open.map(\.id), "still the same alert")
        #expect(try log.list(state: .missed).count == 1, "one missed job per alert, not one per check")

        _ = try log.record(
            .backup, machine: "pc1", state: .completed, startedAt: Self.slotUTC + 4100, endedAt: Self.slotUTC + 4200, bytes: 1, files: 1, detail: nil)
        try moving.set(Self.slotUTC + 4300)
        await m.checkOnce()
        #expect(try book.open().isEmpty, "a good backup clears it")
        #expect(try log.list(state: .missed).count == 1)
    }

    @Test func checkOnceClosesASilentAgentsJobAndAlertsOnItInTheSameRound() async throws {
        let f = try AgentsFixture()
        let moving = MovableClock()
        let t = Self.join
        let log = JobLog(store: f.store)
        let id = try log.begin(.backup, machine: "pc1", trigger: "schedule", claiming: nil, deadline: t + 12 * 3600, now: t)
        var jobs = JobSettings()
        jobs.agentSilenceMinutes = 10
        let m = monitor(f, clock: moving.clock, jobs: jobs)

        try moving.set(t + 599)
        await m.checkOnce()
        #expect(try log.job(id).state == .running)
        #expect(try AlertBook(store: f.store).open().isEmpty)

        try moving.set(t + 660)
        await m.checkOnce()
        #expect(try log.job(id).state == .failed)
        let open = try AlertBook(store: f.store).open()
        #expect(open.map(\.kind) == [.jobFailed] && open.map(\.subject) == ["backup:pc1"])
        #expect(open.first?.message.contains("stopped reporting") == true, "\(open.first?.message ?? "")")
    }

    @Test func providersRaiseAndClearTheirAlertsLikeTheRelaysOwn() async throws {
        let f = try AgentsFixture()
        final class Flag: Sendable { let on = Atomic(true) }
        let lagging = Flag()
        let m = monitor(
            f,
            providers: [
                { _ in lagging.on.load(ordering: .relaxed) ? [AlertCondition(.forwardingLag, "vault", "points wait for the vault")] : [] }
            ])
        await m.checkOnce()
        #expect(try AlertBook(store: f.store).open().map(\.kind) == [.forwardingLag])
        lagging.on.store(false, ordering: .relaxed)
        await m.checkOnce()
        #expect(try AlertBook(store: f.store).open().isEmpty)
    }
}
