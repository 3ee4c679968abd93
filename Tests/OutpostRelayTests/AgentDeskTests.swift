import Foundation
import OutpostCore
import OutpostHTTP
import OutpostStore
import Testing

@testable import OutpostRelay

/// What the relay tells an agent: the plan's tag changes exactly when what the agent acts on changes (its
/// group, the group's hooks, the jobs queued for it), so that the long poll wakes it then and only then; and
/// `backup-now` queues a job only for a machine the relay knows.
@Suite struct AgentDeskTests {
    /// 2026-03-15 12:00 UTC.
    static let t0 = Date(timeIntervalSince1970: 1_773_576_000)

    func withDesk(_ body: (AgentDesk, AgentsFixture) throws -> Void) throws {
        let f = try AgentsFixture()
        try f.machines("pc1", "pc2", now: Self.t0)
        try f.group("g1", ["pc1"], now: Self.t0)
        try body(AgentDesk(store: f.store, clock: .system), f)
    }

    func edit(_ f: AgentsFixture, _ group: String, _ changes: ProtectionGroups.Changes) throws {
        try ProtectionGroups(store: f.store).edit(group, changes, file: RetentionPolicy(), now: Self.t0 + 60)
    }

    @Test func thePlanIsTheGroupsAndItsTagStaysWhileNothingChanges() throws {
        try withDesk { desk, f in
            let plan = try desk.plan(machine: "pc1")
            #expect(plan.group == "g1" && plan.schedule == "daily 21:00" && plan.paths == ["/data"] && plan.queued.isEmpty)
            #expect(plan.hooks == AgentAPI.Hooks(before: nil, after: nil, timeoutSeconds: ProtectionGroup.defaultHookTimeout))
            #expect(plan.tag.count == 24)
            #expect(try desk.plan(machine: "pc1") == plan)
            // What the agent does not act on: another group, this group's retention, a machine's contact.
            try f.group("g2", ["pc2"], now: Self.t0)
            try edit(f, "g1", .init(retention: RetentionPolicy(relayDays: 30)))
            try desk.seen(machine: "pc1", version: "1", timeZone: "Europe/Berlin", hostname: "pc1.lan")
            #expect(try desk.plan(machine: "pc1").tag == plan.tag)
        }
    }

    @Test func theTagChangesWithTheGroup() throws {
        try withDesk { desk, f in
            var tags = [try desk.plan(machine: "pc1").tag]
            try edit(f, "g1", .init(schedule: "mon-fri 22:30"))
            tags.append(try desk.plan(machine: "pc1").tag)
            try edit(f, "g1", .init(paths: ["/data", "/etc"]))
            tags.append(try desk.plan(machine: "pc1").tag)
            try edit(f, "g1", .init(excludes: ["*.tmp"]))
            tags.append(try desk.plan(machine: "pc1").tag)
            #expect(Set(tags).count == 4, "\(tags)")
            let plan = try desk.plan(machine: "pc1")
            #expect(plan.schedule == "mon-fri 22:30" && plan.paths == ["/data", "/etc"] && plan.excludes == ["*.tmp"])

            try edit(f, "g1", .init(machines: []))
            let none = try desk.plan(machine: "pc1")
            #expect(none.group == nil && none.hooks == nil && none.paths.isEmpty && none.schedule == nil)
            #expect(!tags.contains(none.tag), "out of its group: the agent only answers backup-now")
        }
    }

    @Test func theTagChangesWithTheHooks() throws {
        try withDesk { desk, f in
            var tags = [try desk.plan(machine: "pc1").tag]
            try edit(f, "g1", .init(preHook: "/usr/local/bin/dump-db"))
            tags.append(try desk.plan(machine: "pc1").tag)
            try edit(f, "g1", .init(postHook: "/usr/local/bin/drop-dump"))
            tags.append(try desk.plan(machine: "pc1").tag)
            try edit(f, "g1", .init(hookTimeout: 30))
            tags.append(try desk.plan(machine: "pc1").tag)
            #expect(Set(tags).count == 4, "\(tags)")
            #expect(
                try desk.plan(machine: "pc1").hooks
                    == AgentAPI.Hooks(before: "/usr/local/bin/dump-db", after: "/usr/local/bin/drop-dump", timeoutSeconds: 30))
            try edit(f, "g1", .init(preHook: ""))
            #expect(try desk.plan(machine: "pc1").hooks?.before == nil, "an empty hook removes it")
        }
    }

    @Test func theTagChangesWithTheQueuedJobs() throws {
        try withDesk { desk, f in
            let idle = try desk.plan(machine: "pc1")
            let id = try desk.backupNow(machine: "pc1", claimWithin: 3600)
            let queued = try desk.plan(machine: "pc1")
            #expect(queued.queued == [id] && queued.tag != idle.tag)
            #expect(try desk.plan(machine: "pc2").queued.isEmpty, "another machine's job is not in its plan")

            _ = try JobLog(store: f.store).begin(.backup, machine: "pc1", trigger: "now", claiming: id, deadline: Date() + 3600)
            #expect(try desk.plan(machine: "pc1") == idle, "claimed: the plan is what it was before")
        }
    }

    @Test func backupNowQueuesAJobForTheMachinesAgent() throws {
        try withDesk { desk, f in
            let before = Date()
            let id = try desk.backupNow(machine: "pc2", claimWithin: 600)
            let job = try JobLog(store: f.store).job(id)
            #expect(job.kind == .backup && job.machine == "pc2" && job.state == .queued && job.trigger == "now")
            let deadline = try #require(job.deadline)
            #expect(deadline >= before + 600 && deadline <= Date() + 600)
        }
    }

    @Test func backupNowRefusesAMachineTheRelayDoesNotKnow() throws {
        try withDesk { desk, f in
            try MachineCatalog(store: f.store).removeMachine("pc2")
            for name in ["ghost", "pc2"] {
                let e = #expect(throws: OutpostError.self) { try desk.backupNow(machine: name, claimWithin: 600) }
                #expect(e?.code == .notFound)
                #expect(e?.message == "no machine named \(name) is known to this relay; list them with `outpost relay machines`")
            }
            #expect(try JobLog(store: f.store).list(kind: .backup).isEmpty, "nothing was queued")
        }
    }

    @Test func anAgentsContactIsRecordedAndUpdated() throws {
        try withDesk { desk, _ in
            try desk.seen(machine: "pc1", version: "1.0", timeZone: "Europe/Berlin", hostname: "pc1.lan")
            try desk.seen(machine: "pc1", version: "1.1", timeZone: "America/New_York", hostname: "pc1.lan")
            let c = try #require(try desk.contacts()["pc1"])
            #expect(c.version == "1.1" && c.timeZone == "America/New_York" && c.hostname == "pc1.lan")
            #expect(try desk.contacts().count == 1)
        }
    }
}
