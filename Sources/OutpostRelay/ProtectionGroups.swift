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
                """)
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
        public init(
            machines: [String]? = nil, paths: [String]? = nil, excludes: [String]? = nil, schedule: String? = nil,
            retention: RetentionPolicy = RetentionPolicy(), clearRetention: Bool = false
        ) {
            self.machines = machines; self.paths = paths; self.excludes = excludes; self.schedule = schedule
            self.retention = retention; self.clearRetention = clearRetention
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
            if let machines = c.machines {
                try db.execute(sql: "DELETE FROM group_members WHERE group_name = ?", arguments: [name])
                for m in Set(machines) {
                    try db.execute(sql: "INSERT INTO group_members (machine, group_name) VALUES (?, ?)", arguments: [m, name])
                }
            }
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
            createdAt: Date(timeIntervalSince1970: row["created_at"]), updatedAt: Date(timeIntervalSince1970: row["updated_at"]))
    }
}
