import Crypto
import Foundation
import GRDB
import OutpostCore
import OutpostHTTP
import OutpostStore

/// What the relay tells each machine's agent and records of it (issue 12): the plan (its group's paths,
/// schedule and hooks, and the jobs `relay backup-now` queued), the agent's last contact, and its jobs.
public struct AgentDesk: Sendable {
    let store: Store
    let clock: WallClock

    public init(store: Store, clock: WallClock = .fromEnvironment()) {
        self.store = store
        self.clock = clock
    }

    /// The machine's plan now, tagged with a digest of its contents.
    public func plan(machine: String) throws -> AgentAPI.Plan {
        let membership = try ProtectionGroups(store: store).membership(of: machine)
        let g = membership?.group
        var plan = AgentAPI.Plan(
            tag: "", group: g?.name, schedule: g?.schedule, paths: g?.paths ?? [], excludes: g?.excludes ?? [],
            hooks: g.map { AgentAPI.Hooks(before: $0.preHook, after: $0.postHook, timeoutSeconds: $0.hookTimeout) },
            queued: try JobLog(store: store).queued(machine: machine))
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let digest = SHA256.hash(data: try encoder.encode(plan))
        plan.tag = digest.prefix(12).map { String(format: "%02x", $0) }.joined()
        return plan
    }

    /// An agent's contact, as its plan request describes it.
    public struct Contact: Sendable, Codable, Equatable {
        public var machine: String
        public var lastSeen: Date
        public var version: String
        public var timeZone: String
        public var hostname: String
    }

    public func seen(machine: String, version: String, timeZone: String, hostname: String) throws {
        try store.index.write("recording an agent's contact") { db in
            try db.execute(
                sql: """
                    INSERT INTO agents (machine, last_seen, version, time_zone, hostname) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT(machine) DO UPDATE SET last_seen = excluded.last_seen, version = excluded.version,
                    time_zone = excluded.time_zone, hostname = excluded.hostname
                    """, arguments: [machine, clock.now().timeIntervalSince1970, version, timeZone, hostname])
        }
    }

    public func contacts() throws -> [String: Contact] {
        try store.index.read("reading agents") { db in
            Dictionary(
                try Row.fetchAll(db, sql: "SELECT * FROM agents").map { row in
                    let c = Contact(
                        machine: row["machine"], lastSeen: Date(timeIntervalSince1970: row["last_seen"]), version: row["version"],
                        timeZone: row["time_zone"], hostname: row["hostname"])
                    return (c.machine, c)
                }, uniquingKeysWith: { a, _ in a })
        }
    }

    /// `relay backup-now`: a backup job queued for the machine's agent, failed if no agent takes it within
    /// `claimWithin`. Refuses a machine the relay does not know.
    public func backupNow(machine: String, claimWithin: TimeInterval) throws -> Int64 {
        let known = try store.index.read("looking up a machine") { db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM machines WHERE name = ? AND removed_at IS NULL", arguments: [machine]) ?? false
        }
        guard known else {
            throw StoreError(.notFound, "no machine named \(machine) is known to this relay; list them with `outpost relay machines`")
        }
        let now = clock.now()
        return try JobLog(store: store).enqueue(.backup, machine: machine, trigger: "now", deadline: now.addingTimeInterval(claimWithin), now: now)
    }
}
