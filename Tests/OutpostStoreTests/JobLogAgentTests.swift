import Foundation
import OutpostCore
import OutpostStore
import OutpostTestSupport
import Testing

/// Agents' jobs in the job log (issue 12): queued jobs claimed once, reports and ends only on a running job of
/// the same machine, the relay's sweep of jobs that will not end by themselves, and what the alert check reads.
@Suite struct JobLogAgentTests {
    /// 2026-03-15 12:00 UTC.
    static let t0 = Date(timeIntervalSince1970: 1_773_576_000)

    func withLog(_ body: (JobLog, Store) throws -> Void) throws {
        let s = Scratch()
        let store = try makeStore(s)
        try body(JobLog(store: store), store)
    }

    func code(_ body: () throws -> Void) -> OutpostError.Code? {
        do { try body() } catch let e as OutpostError { return e.code } catch { return nil }
        return nil
    }

    // MARK: Queue and claim

    @Test func aQueuedJobIsClaimedOnceAndOnlyByItsMachine() throws {
        try withLog { log, _ in
            let t = Self.t0
            let id = try log.enqueue(.backup, machine: "pc1", trigger: "now", deadline: t + 3600, now: t)
            #expect(try log.queued(machine: "pc1") == [id])
            #expect(try log.queued(machine: "pc2").isEmpty)
            #expect(try log.job(id).state == .queued)

            let other = code { _ = try log.begin(.backup, machine: "pc2", trigger: "now", claiming: id, deadline: t + 7200, now: t + 10) }
            #expect(other == .notFound, "another machine's queued job is not its to claim")
            #expect(code { _ = try log.begin(.backup, machine: "pc1", trigger: "now", claiming: 999, deadline: t + 7200, now: t + 10) } == .notFound)

            let claimed = try log.begin(.backup, machine: "pc1", trigger: "now", claiming: id, deadline: t + 7200, now: t + 10)
            #expect(claimed == id, "the claim runs the queued job, not a new one")
            let job = try log.job(id)
            #expect(job.state == .running && job.startedAt == t + 10 && job.reportedAt == t + 10 && job.deadline == t + 7200)
            #expect(job.trigger == "now")
            #expect(try log.queued(machine: "pc1").isEmpty)

            let again = code { _ = try log.begin(.backup, machine: "pc1", trigger: "now", claiming: id, deadline: t + 7200, now: t + 20) }
            #expect(again == .conflict, "a job is claimed once")
            #expect(try log.list().count == 1)
        }
    }

    @Test func beginWithoutAClaimRecordsANewRunningJob() throws {
        try withLog { log, _ in
            let id = try log.begin(.backup, machine: "pc1", trigger: "schedule", claiming: nil, deadline: Self.t0 + 3600, now: Self.t0)
            let job = try log.job(id)
            #expect(job.kind == .backup && job.machine == "pc1" && job.state == .running && job.trigger == "schedule")
            #expect(job.reportedAt == Self.t0 && job.endedAt == nil)
        }
    }

    // MARK: Report, attach, end

    @Test func reportsReachOnlyARunningJobOfTheSameMachine() throws {
        try withLog { log, _ in
            let t = Self.t0
            let id = try log.begin(.backup, machine: "pc1", trigger: "schedule", claiming: nil, deadline: t + 3600, now: t)
            try log.report(id, machine: "pc1", bytes: 100, files: 2, detail: "reading /data", now: t + 30)
            try log.report(id, machine: "pc1", bytes: 200, files: 3, detail: nil, now: t + 60)
            var job = try log.job(id)
            #expect(job.bytes == 200 && job.files == 3 && job.reportedAt == t + 60)
            #expect(job.detail == "reading /data", "a report without a detail keeps the last one")

            #expect(code { try log.report(id, machine: "pc2", bytes: 1, files: 1, detail: nil, now: t + 61) } == .notFound)
            #expect(code { try log.report(42, machine: "pc1", bytes: 1, files: 1, detail: nil, now: t + 61) } == .notFound)
            job = try log.job(id)
            #expect(job.bytes == 200, "a refused report changes nothing")
        }
    }

    @Test func aJobEndsOnceAndNotAsQueuedOrRunning() throws {
        try withLog { log, _ in
            let t = Self.t0
            let id = try log.begin(.backup, machine: "pc1", trigger: "schedule", claiming: nil, deadline: t + 3600, now: t)
            #expect(code { try log.end(id, machine: "pc1", .running, bytes: 0, files: 0, detail: nil, failedFiles: []) } == .invalid)
            #expect(code { try log.end(id, machine: "pc2", .completed, bytes: 0, files: 0, detail: nil, failedFiles: []) } == .notFound)
            let failed = [Job.FailedFile(path: "/data/locked", reason: "Permission denied")]
            try log.end(
                id, machine: "pc1", .completedWithWarnings, bytes: 500, files: 7, detail: "1 file could not be read", failedFiles: failed, now: t + 90
            )
            let job = try log.job(id)
            #expect(job.state == .completedWithWarnings && job.endedAt == t + 90 && job.bytes == 500 && job.files == 7)
            #expect(job.failedFiles == failed)

            #expect(code { try log.end(id, machine: "pc1", .failed, bytes: 0, files: 0, detail: nil, failedFiles: [], now: t + 91) } == .conflict)
            #expect(code { try log.report(id, machine: "pc1", bytes: 0, files: 0, detail: nil, now: t + 91) } == .conflict)
            #expect(try log.job(id).state == .completedWithWarnings, "a late report does not reopen or change the job")
        }
    }

    @Test func aPointAttachesOnlyToARunningJobOfItsMachine() throws {
        try withLog { log, _ in
            let t = Self.t0
            let id = try log.begin(.backup, machine: "pc1", trigger: "schedule", claiming: nil, deadline: t + 3600, now: t)
            #expect(try log.attach(point: "ab12", to: id, machine: "pc2") == false)
            #expect(try log.attach(point: "cd34", to: id, machine: "pc1"))
            #expect(try log.job(id).point == "cd34")
            try log.end(id, machine: "pc1", .completed, bytes: 0, files: 0, detail: nil, failedFiles: [], now: t + 1)
            #expect(try log.attach(point: "ef56", to: id, machine: "pc1") == false, "an ended job keeps its point")
            #expect(try log.job(id).point == "cd34")
        }
    }

    // MARK: Sweep

    @Test func aQueuedJobNoAgentTookFailsAtItsDeadline() throws {
        try withLog { log, _ in
            let t = Self.t0
            let id = try log.enqueue(.backup, machine: "pc1", trigger: "now", deadline: t + 3600, now: t)
            #expect(try log.sweep(now: t + 3599, silence: 60).isEmpty, "a queued job has no agent to fall silent")
            let ended = try log.sweep(now: t + 3601, silence: 60)
            #expect(ended.map(\.id) == [id])
            let job = try log.job(id)
            #expect(job.state == .failed && job.endedAt == t + 3601)
            #expect(job.detail?.contains("no agent of machine pc1 took this job") == true, "\(job.detail ?? "")")
            #expect(try log.sweep(now: t + 7200, silence: 60).isEmpty, "ended once")
        }
    }

    @Test func aRunningJobPastItsDeadlineFails() throws {
        try withLog { log, _ in
            let t = Self.t0
            // `outpost backup` by hand: no silence rule, only the deadline.
            let id = try log.begin(.backup, machine: "pc1", trigger: "manual", claiming: nil, deadline: t + 3600, now: t)
            #expect(try log.sweep(now: t + 3000, silence: 60).isEmpty)
            #expect(try log.sweep(now: t + 3601, silence: 60).map(\.id) == [id])
            let job = try log.job(id)
            #expect(job.state == .failed && job.detail?.contains("still running at its deadline") == true, "\(job.detail ?? "")")
        }
    }

    @Test func agentSilenceFailsOnlyScheduledAndBackupNowJobs() throws {
        try withLog { log, _ in
            let t = Self.t0
            let scheduled = try log.begin(.backup, machine: "pc1", trigger: "schedule", claiming: nil, deadline: t + 86400, now: t)
            let now = try log.begin(.backup, machine: "pc2", trigger: "now", claiming: nil, deadline: t + 86400, now: t)
            let manual = try log.begin(.backup, machine: "pc3", trigger: "manual", claiming: nil, deadline: t + 86400, now: t)
            let talking = try log.begin(.backup, machine: "pc4", trigger: "schedule", claiming: nil, deadline: t + 86400, now: t)
            try log.report(talking, machine: "pc4", bytes: 1, files: 1, detail: nil, now: t + 500)

            #expect(try log.sweep(now: t + 599, silence: 600).isEmpty)
            let ended = try log.sweep(now: t + 601, silence: 600)
            #expect(Set(ended.map(\.id)) == [scheduled, now])
            #expect(try log.job(scheduled).detail?.contains("the agent of pc1 stopped reporting") == true)
            #expect(try log.job(manual).state == .running, "`outpost backup` by hand does not report every 30 s")
            #expect(try log.job(talking).state == .running, "a report keeps a job alive")
        }
    }

    @Test func aSilentJobThatCommittedItsPointCompleted() throws {
        try withLog { log, _ in
            let t = Self.t0
            let silent = try log.begin(.backup, machine: "pc1", trigger: "schedule", claiming: nil, deadline: t + 86400, now: t)
            #expect(try log.attach(point: "0123456789abcdef0123", to: silent, machine: "pc1"))
            let late = try log.begin(.backup, machine: "pc2", trigger: "manual", claiming: nil, deadline: t + 60, now: t)
            #expect(try log.attach(point: "fedcba9876543210fedc", to: late, machine: "pc2"))

            let ended = try log.sweep(now: t + 601, silence: 600)
            #expect(Set(ended.map(\.id)) == [silent, late])
            for id in [silent, late] {
                let job = try log.job(id)
                #expect(job.state == .completed, "the point is there: the backup happened")
                #expect(job.detail?.contains("committed") == true, "\(job.detail ?? "")")
            }
            #expect(try log.job(silent).detail?.contains("0123456789ab") == true)
            #expect(try log.lastGoodBackups()["pc1"] == t)
        }
    }

    @Test func jobsWithoutADeadlineAreLeftToMarkAbandoned() throws {
        try withLog { log, _ in
            let id = try log.start(.gc, now: Self.t0)
            #expect(try log.sweep(now: Self.t0 + 86400 * 30, silence: 1).isEmpty)
            #expect(try log.job(id).state == .running)
        }
    }

    // MARK: What the alert check reads

    @Test func latestEndedIsTheLastEndedRunOfEachKindPerMachine() throws {
        try withLog { log, store in
            let t = Self.t0
            func rec(_ kind: Job.Kind, _ machine: String?, _ state: Job.State, _ end: TimeInterval) throws -> Int64 {
                try log.record(kind, machine: machine, state: state, startedAt: t, endedAt: t + end, bytes: 0, files: 0, detail: nil)
            }
            _ = try rec(.backup, "pc1", .failed, 10)
            let pc1 = try rec(.backup, "pc1", .completed, 20)
            _ = try rec(.backup, "pc1", .missed, 30)
            _ = try rec(.backup, "pc1", .cancelled, 40)
            let pc2 = try rec(.backup, "pc2", .failed, 10)
            _ = try rec(.prune, nil, .completed, 10)
            let prune = try rec(.prune, nil, .failed, 20)
            _ = try log.begin(.backup, machine: "pc2", trigger: "schedule", claiming: nil, deadline: t + 3600, now: t + 50)
            try store.index.write("a group change") { db in try JobLog.recordChange(db, "created protection group g", now: t + 60) }

            let latest = try log.latestEnded()
            #expect(Set(latest.map(\.id)) == [pc1, pc2, prune], "\(latest.map { "\($0.kind) \($0.machine ?? "-") \($0.state)" })")
        }
    }

    @Test func aGroupChangeIsACompletedGroupJob() throws {
        try withLog { log, store in
            try store.index.write("a group change") { db in try JobLog.recordChange(db, "created protection group g", now: Self.t0) }
            let jobs = try log.list(kind: .group)
            #expect(jobs.count == 1)
            #expect(jobs.first?.state == .completed && jobs.first?.machine == nil && jobs.first?.detail == "created protection group g")
            #expect(jobs.first?.startedAt == Self.t0 && jobs.first?.endedAt == Self.t0)
        }
    }

    @Test func lastGoodBackupsAreTheLatestCompletedStartsPerMachine() throws {
        try withLog { log, _ in
            let t = Self.t0
            _ = try log.record(.backup, machine: "pc1", state: .completed, startedAt: t, endedAt: t + 10, bytes: 0, files: 0, detail: nil)
            _ = try log.record(.backup, machine: "pc1", state: .failed, startedAt: t + 100, endedAt: t + 110, bytes: 0, files: 0, detail: nil)
            _ = try log.record(
                .backup, machine: "pc2", state: .completedWithWarnings, startedAt: t + 200, endedAt: t + 210, bytes: 0, files: 0, detail: nil)
            _ = try log.record(.backup, machine: "pc3", state: .missed, startedAt: t, endedAt: t, bytes: 0, files: 0, detail: nil)
            _ = try log.record(.restore, machine: "pc3", state: .completed, startedAt: t, endedAt: t, bytes: 0, files: 0, detail: nil)
            #expect(try log.lastGoodBackups() == ["pc1": t, "pc2": t + 200])
        }
    }
}
