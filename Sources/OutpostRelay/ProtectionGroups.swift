import Foundation
import GRDB
import OutpostCore
import OutpostStore

/// A protection group (issue 12, as in DPM): which machines are backed up, which paths of each, on which
/// schedule, and how long the two tiers keep the points. A machine belongs to at most one group.
public struct ProtectionGroup: Sendable, Equatable, Codable {
    public var name: String
    public var machines: [String]
    public var paths: [String]
    public var excludes: [String]
    public var schedule: String
    /// The group's own retention values (nil where the relay's default or relay.toml decides).
    public var retention: RetentionPolicy
    public var createdAt: Date
    public var updatedAt: Date
    /// Commands the agents run before and after each backup (`/bin/sh -c`), if their machine allows them.
    public var preHook: String?
    public var postHook: String?
    /// Seconds a hook may run before it is killed and fails.
    public var hookTimeout: Int

    public static let defaultHookTimeout = 600
}

/// The relay's protection groups, in its index (schema v8): `protection_groups` and `group_members`; a group's
/// retention lives in `retention_policies` under the key `group:NAME` (machine names cannot hold a colon), and
/// applies to its machines below their own values and above the relay's default.
public struct ProtectionGroups: Sendable {
    let index: StoreIndex

    public init(store: Store) { index = store.index }

    public static let migrations = [
        // Protection groups (issue 12): a machine belongs to at most one (the primary key of group_members).
        IndexMigration(
            "v8",
            sql: """
                CREATE TABLE protection_groups (
                    name TEXT PRIMARY KEY,
                    schedule TEXT NOT NULL,
                    paths TEXT NOT NULL,
                    excludes TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    updated_at REAL NOT NULL
                );
                CREATE TABLE group_members (
                    machine TEXT PRIMARY KEY,
                    group_name TEXT NOT NULL REFERENCES protection_groups(name)
                ) WITHOUT ROWID;
                """),
        // The agents (issue 12): each group's hooks, when each machine joined its group (a missed backup is
        // counted from then), and each machine's agent as it last asked for its plan.
        IndexMigration(
            "v11",
            sql: """
                ALTER TABLE protection_groups ADD COLUMN pre_hook TEXT;
                ALTER TABLE protection_groups ADD COLUMN post_hook TEXT;
                ALTER TABLE protection_groups ADD COLUMN hook_timeout INTEGER NOT NULL DEFAULT 600;
                ALTER TABLE group_members ADD COLUMN joined_at REAL NOT NULL DEFAULT 0;
                UPDATE group_members SET joined_at =
                    COALESCE((SELECT created_at FROM protection_groups WHERE name = group_members.group_name), 0);
                CREATE TABLE agents (
                    machine TEXT PRIMARY KEY,
                    last_seen REAL NOT NULL,
                    version TEXT NOT NULL,
                    time_zone TEXT NOT NULL,
                    hostname TEXT NOT NULL
                ) WITHOUT ROWID;
                """),
    ]

    static func retentionKey(_ group: String) -> String { "group:" + group }

    /// What `create` and `edit` change; nil leaves a field as it is (`edit`).
    public struct Changes: Sendable {
        public var machines: [String]?
        public var paths: [String]?
        public var excludes: [String]?
        public var schedule: String?
        public var retention = RetentionPolicy()
        public var clearRetention = false
        /// "" removes a hook.
        public var preHook: String?
        public var postHook: String?
        public var hookTimeout: Int?
        public init(
            machines: [String]? = nil, paths: [String]? = nil, excludes: [String]? = nil, schedule: String? = nil,
            retention: RetentionPolicy = RetentionPolicy(), clearRetention: Bool = false, preHook: String? = nil, postHook: String? = nil,
            hookTimeout: Int? = nil
        ) {
            self.machines = machines; self.paths = paths; self.excludes = excludes; self.schedule = schedule
            self.retention = retention; self.clearRetention = clearRetention
            self.preHook = preHook; self.postHook = postHook; self.hookTimeout = hookTimeout
        }

        /// What the change does, in a line (the group's job record).
        var summary: String {
            var parts: [String] = []
            if let machines { parts.append("machines " + (machines.isEmpty ? "none" : machines.joined(separator: ","))) }
            if let paths { parts.append("paths " + paths.joined(separator: ",")) }
            if let excludes { parts.append("excludes " + (excludes.isEmpty ? "none" : excludes.joined(separator: ","))) }
            if let schedule { parts.append("schedule \(schedule)") }
            if !retention.isEmpty { parts.append("retention set") }
            if clearRetention { parts.append("retention cleared") }
            if let preHook { parts.append(preHook.isEmpty ? "no pre-hook" : "pre-hook set") }
            if let postHook { parts.append(postHook.isEmpty ? "no post-hook" : "post-hook set") }
            if let hookTimeout { parts.append("hook timeout \(hookTimeout) s") }
            return parts.joined(separator: "; ")
        }
    }

    /// Creates a group; refuses a taken or malformed name, an unknown machine, a machine in another group, a
    /// malformed schedule, a relative path and a retention out of its ranges, changing nothing.
    public func create(_ name: String, _ c: Changes, file: RetentionPolicy, now: Date = Date()) throws {
        if let problem = MachineName.problem(name) {
            throw StoreError(.invalid, problem.replacingOccurrences(of: "machine name", with: "group name"))
        }
        guard let schedule = c.schedule else { throw StoreError(.invalid, "group \(name) needs a --schedule (for example `daily 21:00`)") }
        guard let paths = c.paths, !paths.isEmpty else { throw StoreError(.invalid, "group \(name) needs at least one --path to protect") }
        try write(name, creating: true, c, schedule: schedule, paths: paths, file: file, now: now)
    }

    /// Changes a group: fields given replace the group's (`--machine` the whole member list), retention values
    /// given are set over the group's earlier ones (all replaced with `clearRetention`).
    public func edit(_ name: String, _ c: Changes, file: RetentionPolicy, now: Date = Date()) throws {
        try write(name, creating: false, c, schedule: c.schedule, paths: c.paths, file: file, now: now)
    }

    private func write(
        _ name: String, creating: Bool, _ c: Changes, schedule: String?, paths: [String]?, file: RetentionPolicy, now: Date
    ) throws {
        let canonical = try schedule.map { try BackupSchedule.parse($0).description }
        for p in paths ?? [] where !p.hasPrefix("/") {
            throw StoreError(.invalid, "path \(Terminal.quoted(p)) of group \(name) is not absolute; give it from the root, as the machine sees it")
        }
        for g in c.excludes ?? [] where g.isEmpty { throw StoreError(.invalid, "an empty --exclude pattern in group \(name)") }
        for hook in [c.preHook, c.postHook].compactMap({ $0 }) where hook.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\0" }) {
            throw StoreError(.invalid, "a hook of group \(name) holds a line break; give one command line (a script's path, for example)")
        }
        if let t = c.hookTimeout, !(1...86400).contains(t) {
            throw StoreError(.invalid, "--hook-timeout \(t) is out of range: give 1 to 86400 seconds")
        }
        try c.retention.validate()
        try index.write("saving protection group \(name)") { db in
            let exists = try Bool.fetchOne(db, sql: "SELECT 1 FROM protection_groups WHERE name = ?", arguments: [name]) ?? false
            if creating && exists {
                throw StoreError(.taken, "a protection group named \(name) exists; change it with `outpost relay group edit`")
            }
            if !creating && !exists {
                throw StoreError(.notFound, "no protection group is named \(name); list them with `outpost relay group list`")
            }
            if let machines = c.machines {
                let known = Set(try String.fetchAll(db, sql: "SELECT name FROM machines WHERE removed_at IS NULL"))
                for m in machines where !known.contains(m) {
                    throw StoreError(.notFound, "no machine named \(m) is known to this relay; add it with `outpost relay add-machine` first")
                }
                for m in machines {
                    if let other = try String.fetchOne(db, sql: "SELECT group_name FROM group_members WHERE machine = ?", arguments: [m]),
                        other != name
                    {
                        throw StoreError(
                            .taken,
                            "machine \(m) is in protection group \(other) already; a machine belongs to one group: take it out there first (`outpost relay group edit \(other) --machine …`)"
                        )
                    }
                }
            }
            let encoder = JSONEncoder()
            if creating {
                try db.execute(
                    sql: "INSERT INTO protection_groups (name, schedule, paths, excludes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [
                        name, canonical ?? "", String(decoding: try encoder.encode(paths ?? []), as: UTF8.self),
                        String(decoding: try encoder.encode(c.excludes ?? []), as: UTF8.self), now.timeIntervalSince1970, now.timeIntervalSince1970,
                    ])
            } else {
                if let canonical { try db.execute(sql: "UPDATE protection_groups SET schedule = ? WHERE name = ?", arguments: [canonical, name]) }
                if let paths {
                    try db.execute(
                        sql: "UPDATE protection_groups SET paths = ? WHERE name = ?",
                        arguments: [String(decoding: try encoder.encode(paths), as: UTF8.self), name])
                }
                if let excludes = c.excludes {
                    try db.execute(
                        sql: "UPDATE protection_groups SET excludes = ? WHERE name = ?",
                        arguments: [String(decoding: try encoder.encode(excludes), as: UTF8.self), name])
                }
                try db.execute(sql: "UPDATE protection_groups SET updated_at = ? WHERE name = ?", arguments: [now.timeIntervalSince1970, name])
            }
            func nonEmpty(_ s: String) -> String? { s.isEmpty ? nil : s }
            if let preHook = c.preHook {
                try db.execute(sql: "UPDATE protection_groups SET pre_hook = ? WHERE name = ?", arguments: [nonEmpty(preHook), name])
            }
            if let postHook = c.postHook {
                try db.execute(sql: "UPDATE protection_groups SET post_hook = ? WHERE name = ?", arguments: [nonEmpty(postHook), name])
            }
            if let t = c.hookTimeout { try db.execute(sql: "UPDATE protection_groups SET hook_timeout = ? WHERE name = ?", arguments: [t, name]) }
            if let machines = c.machines {
                // Members that stay keep the time they joined (a missed backup counts from then).
                let joined = Dictionary(
                    try Row.fetchAll(db, sql: "SELECT machine, joined_at FROM group_members WHERE group_name = ?", arguments: [name]).map {
                        (($0["machine"] as String), ($0["joined_at"] as Double))
                    }, uniquingKeysWith: { a, _ in a })
                try db.execute(sql: "DELETE FROM group_members WHERE group_name = ?", arguments: [name])
                for m in Set(machines) {
                    try db.execute(
                        sql: "INSERT INTO group_members (machine, group_name, joined_at) VALUES (?, ?, ?)",
                        arguments: [m, name, joined[m] ?? now.timeIntervalSince1970])
                }
            }
            try JobLog.recordChange(db, "\(creating ? "created" : "changed") protection group \(name): \(c.summary)", now: now)
            if !c.retention.isEmpty || c.clearRetention {
                try RetentionSettings.store(c.retention, key: Self.retentionKey(name), clear: c.clearRetention, db: db, now: now)
            }
            // Every policy the change reaches must still hold together (the 9999-point limit).
            try RetentionSettings.checkAll(db, file: file)
        }
    }

    /// Deletes a group: its machines belong to none; their points stay (their own retention or the relay's
    /// default applies from now on).
    public func delete(_ name: String) throws {
        try index.write("deleting protection group \(name)") { db in
            try db.execute(sql: "DELETE FROM group_members WHERE group_name = ?", arguments: [name])
            try db.execute(sql: "DELETE FROM retention_policies WHERE machine = ?", arguments: [Self.retentionKey(name)])
            try db.execute(sql: "DELETE FROM protection_groups WHERE name = ?", arguments: [name])
            if db.changesCount == 0 {
                throw StoreError(.notFound, "no protection group is named \(name); list them with `outpost relay group list`")
            }
            try JobLog.recordChange(db, "deleted protection group \(name)", now: Date())
        }
    }

    public func list() throws -> [ProtectionGroup] {
        try index.read("listing protection groups") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM protection_groups ORDER BY name").map { try Self.group($0, db) }
        }
    }

    public func show(_ name: String) throws -> ProtectionGroup {
        try index.read("reading protection group \(name)") { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM protection_groups WHERE name = ?", arguments: [name]) else {
                throw StoreError(.notFound, "no protection group is named \(name); list them with `outpost relay group list`")
            }
            return try Self.group(row, db)
        }
    }

    /// The group a machine belongs to, if any.
    public func group(of machine: String) throws -> String? {
        try index.read("looking up a machine's group") { db in
            try String.fetchOne(db, sql: "SELECT group_name FROM group_members WHERE machine = ?", arguments: [machine])
        }
    }

    static func group(_ row: Row, _ db: Database) throws -> ProtectionGroup {
        let name: String = row["name"]
        let decoder = JSONDecoder()
        return ProtectionGroup(
            name: name,
            machines: try String.fetchAll(db, sql: "SELECT machine FROM group_members WHERE group_name = ? ORDER BY machine", arguments: [name]),
            paths: (try? decoder.decode([String].self, from: Data((row["paths"] as String).utf8))) ?? [],
            excludes: (try? decoder.decode([String].self, from: Data((row["excludes"] as String).utf8))) ?? [],
            schedule: row["schedule"], retention: try RetentionSettings.stored(db, key: retentionKey(name)),
            createdAt: Date(timeIntervalSince1970: row["created_at"]), updatedAt: Date(timeIntervalSince1970: row["updated_at"]),
            preHook: row["pre_hook"], postHook: row["post_hook"], hookTimeout: row["hook_timeout"])
    }

    /// A machine's group with when it joined, if it is in one.
    public func membership(of machine: String) throws -> (group: ProtectionGroup, joinedAt: Date)? {
        try index.read("reading a machine's group") { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT group_name, joined_at FROM group_members WHERE machine = ?", arguments: [machine]),
                let g = try Row.fetchOne(db, sql: "SELECT * FROM protection_groups WHERE name = ?", arguments: [row["group_name"] as String])
            else { return nil }
            return (try Self.group(g, db), Date(timeIntervalSince1970: row["joined_at"]))
        }
    }

    /// Every member of every group, with when it joined (the missed-backup check).
    public func memberships() throws -> [(machine: String, group: ProtectionGroup, joinedAt: Date)] {
        try index.read("reading group members") { db in
            var groups: [String: ProtectionGroup] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM protection_groups") {
                let g = try Self.group(row, db)
                groups[g.name] = g
            }
            return try Row.fetchAll(db, sql: "SELECT machine, group_name, joined_at FROM group_members ORDER BY machine").compactMap { row in
                groups[row["group_name"] as String].map {
                    (machine: row["machine"] as String, group: $0, joinedAt: Date(timeIntervalSince1970: row["joined_at"]))
                }
            }
        }
    }
}
