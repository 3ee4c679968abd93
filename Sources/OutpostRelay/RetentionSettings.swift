import Foundation
import GRDB
import OutpostCore
import OutpostStore

/// Where an effective retention value comes from, most specific first.
public enum RetentionSource: String, Sendable, Codable {
    /// The machine's own value, set with `outpost relay retention --machine NAME`.
    case machine
    /// The value of the machine's protection group (`outpost relay group`).
    case group
    /// The relay's default, set with `outpost relay retention` (kept in the index, wins over relay.toml).
    case relayDefault = "relay default"
    /// relay.toml's `[retention]` table.
    case file = "relay.toml"
    /// No rule anywhere.
    case none
}

/// The policy that applies to one machine (or, without a machine, the relay's default), value by value, and
/// where each value comes from.
public struct EffectiveRetention: Sendable, Codable, Equatable {
    /// Nil for the relay's default.
    public var machine: String?
    public var policy: RetentionPolicy
    /// By setting (`relayDays`, …).
    public var sources: [String: RetentionSource]

    public func source(_ s: RetentionPolicy.Setting) -> RetentionSource { sources[s.rawValue] ?? .none }
}

/// The retention policies kept in the relay's index (schema v5): the relay's default and per-machine values,
/// each of which wins over the level below it (machine → relay default → relay.toml), value by value. Rules
/// only ever keep points, so a value inherited from a lower level keeps more, never less.
public struct RetentionSettings: Sendable {
    let index: StoreIndex

    public init(store: Store) { index = store.index }

    /// The retention tables in the store's index (docs/format.md §9), registered by the binary before it opens
    /// a store, like the machine catalog's.
    public static let migrations = [
        // Retention (issue 11): the policies set with `outpost relay retention` (machine '' is the relay's
        // default), and the recovery points pruned from the relay after they were forwarded, which the vault
        // still holds (so that its tier can still be decided, and later listed and restored).
        IndexMigration(
            "v5",
            sql: """
                CREATE TABLE retention_policies (
                    machine TEXT PRIMARY KEY,
                    relay_days INTEGER,
                    relay_last INTEGER,
                    vault_daily INTEGER,
                    vault_weekly INTEGER,
                    vault_monthly INTEGER,
                    vault_yearly INTEGER,
                    updated_at REAL NOT NULL
                );
                CREATE TABLE pruned_points (
                    point_id BLOB PRIMARY KEY,
                    machine TEXT NOT NULL,
                    finished_at REAL NOT NULL,
                    record BLOB NOT NULL,
                    pruned_at REAL NOT NULL
                );
                """)
    ]

    /// The `machine` key of the relay's default (no machine name is empty).
    static let relayKey = ""

    /// The values stored at one level: a machine's own, or (nil) the relay's default. Unset values are nil.
    public func stored(machine: String?) throws -> RetentionPolicy {
        try index.read("reading the retention policy") { db in try Self.stored(db, key: machine ?? Self.relayKey) }
    }

    static func stored(_ db: Database, key: String) throws -> RetentionPolicy {
        var p = RetentionPolicy()
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM retention_policies WHERE machine = ?", arguments: [key]) else { return p }
        for s in RetentionPolicy.Setting.allCases { p[s] = row[s.key] as Int? }
        return p
    }

    /// Sets `values` for a machine, or (nil) as the relay's default; values left nil keep what was set before,
    /// unless `clear` (then the level's earlier values go). Refuses an unknown machine (exit 14), a value out of
    /// its range and a policy that would keep more than 9999 vault points for any machine it applies to (64).
    public func set(_ values: RetentionPolicy, machine: String?, clear: Bool, file: RetentionPolicy, now: Date = Date()) throws {
        try values.validate()
        try index.write("setting the retention policy") { db in
            let names = try String.fetchAll(db, sql: "SELECT name FROM machines ORDER BY name")
            if let machine, !names.contains(machine) {
                throw StoreError(.notFound, "no machine named \(machine) is known to this relay; list them with `outpost relay machines`")
            }
            try Self.store(values, key: machine ?? Self.relayKey, clear: clear, db: db, now: now)
            // Every policy this change reaches must still hold together (the 9999-point limit adds up values that
            // may come from different levels). Refused here, the transaction leaves the index as it was.
            try Self.checkAll(db, file: file, machines: machine.map { [$0] })
        }
    }

    /// Stores the values at one level (`key`): over the level's earlier values, or instead of them (`clear`).
    static func store(_ values: RetentionPolicy, key: String, clear: Bool, db: Database, now: Date) throws {
        let updated = clear ? values : values.over(try Self.stored(db, key: key))
        try db.execute(sql: "DELETE FROM retention_policies WHERE machine = ?", arguments: [key])
        if !updated.isEmpty {
            var row: [(any DatabaseValueConvertible)?] = [key]
            for s in RetentionPolicy.Setting.allCases { row.append(updated[s]) }
            row.append(now.timeIntervalSince1970)
            let columns = RetentionPolicy.Setting.allCases.map(\.key).joined(separator: ", ")
            try db.execute(
                sql: "INSERT INTO retention_policies (machine, \(columns), updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                arguments: StatementArguments(row))
        }
    }

    /// Checks the relay's default and the effective policy of `machines` (all when nil) against the ranges.
    static func checkAll(_ db: Database, file: RetentionPolicy, machines: [String]? = nil) throws {
        let relay = try Self.stored(db, key: Self.relayKey).over(file)
        try Self.check(relay, what: "the relay's default")
        for name in try machines ?? String.fetchAll(db, sql: "SELECT name FROM machines ORDER BY name") {
            try Self.check(try Self.effective(db, machine: name, file: file).policy, what: "machine \(name)")
        }
    }

    private static func check(_ policy: RetentionPolicy, what: String) throws {
        do { try policy.validate() } catch let e as OutpostError {
            throw OutpostError(e.code, "\(e.message) in the policy of \(what); nothing was changed")
        }
    }

    /// The effective policy of a machine (or, nil, the relay's default) over relay.toml's `file`.
    public func effective(machine: String?, file: RetentionPolicy) throws -> EffectiveRetention {
        try index.read("reading the retention policy") { db in try Self.effective(db, machine: machine, file: file) }
    }

    /// The relay's default and every machine's effective policy, by name.
    public func effectiveForAll(file: RetentionPolicy) throws -> (relay: EffectiveRetention, machines: [EffectiveRetention]) {
        try index.read("reading the retention policies") { db in
            let names = try String.fetchAll(db, sql: "SELECT name FROM machines ORDER BY name")
            return (try Self.effective(db, machine: nil, file: file), try names.map { try Self.effective(db, machine: $0, file: file) })
        }
    }

    static func effective(_ db: Database, machine: String?, file: RetentionPolicy) throws -> EffectiveRetention {
        let relay = try stored(db, key: relayKey)
        let own = try machine.map { try stored(db, key: $0) } ?? RetentionPolicy()
        // The machine's protection group, between its own values and the relay's default (schema v8; a store
        // without the table has no groups).
        var group = RetentionPolicy()
        if let machine, try db.tableExists("group_members"),
            let name = try String.fetchOne(db, sql: "SELECT group_name FROM group_members WHERE machine = ?", arguments: [machine])
        {
            group = try stored(db, key: ProtectionGroups.retentionKey(name))
        }
        var out = EffectiveRetention(machine: machine, policy: RetentionPolicy(), sources: [:])
        for s in RetentionPolicy.Setting.allCases {
            out.policy[s] = own[s] ?? group[s] ?? relay[s] ?? file[s]
            let source: RetentionSource =
                own[s] != nil ? .machine : group[s] != nil ? .group : relay[s] != nil ? .relayDefault : file[s] != nil ? .file : .none
            out.sources[s.rawValue] = source
        }
        return out
    }
}
