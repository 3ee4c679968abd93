import Foundation
import GRDB
import OutpostConsole
import OutpostForwarder
import OutpostRelay
import OutpostStore
import Testing

/// The index schema (docs/format.md §9) of the stores the binary makes: the store's own migrations (v1, v6, v9, v10, v14, v15, v17) and the ones
/// the relay's machine catalog, its retention settings (v5), its alerts (v12, v16) and the forwarder's ledger register.
@Suite struct IndexSchemaEndToEndTests {
    /// Every store, local or a relay's, carries the whole schema, statement for statement as the stores made
    /// before the migrations moved to the modules that own them: an existing store opens with nothing to apply
    /// and nothing unknown.
    @Test func everyStoreCarriesTheWholeSchemaUnchanged() throws {
        let s = Scratch()
        #expect(try CLI.run(["store", "init", "--store", s.sub("local")]).status == 0)
        #expect(try CLI.run(["relay", "init", "--data", s.sub("relay")]).status == 0)
        for path in [s.sub("local"), s.sub("relay") + "/store"] {
            var config = Configuration()
            config.readonly = true
            let db = try DatabaseQueue(path: path + "/index.sqlite", configuration: config)
            let (migrations, schema) = try db.read { db in
                (
                    try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier"),
                    try Row.fetchAll(db, sql: "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name").map {
                        "\($0["type"] as String) \($0["name"] as String): \($0["sql"] as String)"
                    }
                )
            }
            #expect(
                migrations == ["v1", "v10", "v11", "v12", "v13", "v14", "v15", "v16", "v17", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9"],
                "\(path)")
            #expect(schema == Self.schema, "\(path)")
        }
    }

    /// sqlite_master of a store made by the binary before this test was written (by name).
    static let schema = [
        """
        table agents: CREATE TABLE agents (
            machine TEXT PRIMARY KEY,
            last_seen REAL NOT NULL,
            version TEXT NOT NULL,
            time_zone TEXT NOT NULL,
            hostname TEXT NOT NULL
        ) WITHOUT ROWID
        """,
        """
        table alert_deliveries: CREATE TABLE alert_deliveries (
            id INTEGER PRIMARY KEY,
            alert INTEGER NOT NULL REFERENCES alerts(id),
            event TEXT NOT NULL,
            channel TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            delivered_at REAL,
            last_error TEXT
        )
        """,
        """
        index alert_deliveries_by_alert: CREATE INDEX alert_deliveries_by_alert ON alert_deliveries(alert)
        """,
        """
        index alert_deliveries_pending: CREATE INDEX alert_deliveries_pending ON alert_deliveries(next_at) WHERE state = 'pending'
        """,
        """
        table alerts: CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            message TEXT NOT NULL,
            opened_at REAL NOT NULL,
            cleared_at REAL
        )
        """,
        """
        index alerts_open: CREATE UNIQUE INDEX alerts_open ON alerts(kind, subject) WHERE cleared_at IS NULL
        """,
        """
        table blobs: CREATE TABLE blobs (
            id BLOB PRIMARY KEY,
            kind INTEGER NOT NULL,
            pack_id INTEGER NOT NULL REFERENCES packs(id),
            offset INTEGER NOT NULL,
            stored_length INTEGER NOT NULL,
            raw_length INTEGER NOT NULL,
            compression INTEGER NOT NULL
        , touched_at REAL NOT NULL DEFAULT 0) WITHOUT ROWID
        """,
        """
        index blobs_by_pack: CREATE INDEX blobs_by_pack ON blobs(pack_id)
        """,
        """
        index blobs_touched_trees: CREATE INDEX blobs_touched_trees ON blobs(touched_at) WHERE kind = 1
        """,
        """
        table console_admins: CREATE TABLE console_admins (
            name TEXT PRIMARY KEY,
            password TEXT,
            created_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
        """
        table console_links: CREATE TABLE console_links (
            token_hash BLOB PRIMARY KEY,
            admin TEXT NOT NULL REFERENCES console_admins(name) ON DELETE CASCADE,
            expires_at REAL NOT NULL,
            used_at REAL
        ) WITHOUT ROWID
        """,
        """
        table console_sessions: CREATE TABLE console_sessions (
            token_hash BLOB PRIMARY KEY,
            admin TEXT NOT NULL REFERENCES console_admins(name) ON DELETE CASCADE,
            csrf TEXT NOT NULL,
            created_at REAL NOT NULL,
            last_seen REAL NOT NULL
        ) WITHOUT ROWID
        """,
        """
        table enrollment_tokens: CREATE TABLE enrollment_tokens (
            token_hash BLOB PRIMARY KEY,
            machine TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            used_at REAL
        )
        """,
        """
        table forgotten_points: CREATE TABLE forgotten_points (
            id BLOB PRIMARY KEY,
            root_tree BLOB NOT NULL,
            forgotten_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
        """
        table forwarding: CREATE TABLE forwarding (
            point_id BLOB PRIMARY KEY,
            state TEXT NOT NULL,
            reason TEXT,
            bytes INTEGER NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL
        )
        """,
        """
        table gc_state: CREATE TABLE gc_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            generation INTEGER NOT NULL
        )
        """,
        """
        table grdb_migrations: CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY)
        """,
        """
        table group_members: CREATE TABLE group_members (
            machine TEXT PRIMARY KEY,
            group_name TEXT NOT NULL REFERENCES protection_groups(name)
        , joined_at REAL NOT NULL DEFAULT 0) WITHOUT ROWID
        """,
        """
        table job_tallies: CREATE TABLE job_tallies (
            kind TEXT NOT NULL,
            state TEXT NOT NULL,
            jobs INTEGER NOT NULL,
            duration_sum REAL NOT NULL,
            buckets TEXT NOT NULL,
            PRIMARY KEY (kind, state)
        ) WITHOUT ROWID
        """,
        """
        table jobs: CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            machine TEXT,
            state TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL,
            bytes INTEGER NOT NULL DEFAULT 0,
            files INTEGER NOT NULL DEFAULT 0,
            detail TEXT,
            failed_files TEXT NOT NULL DEFAULT '[]'
        , trigger TEXT, point TEXT, deadline REAL, reported_at REAL)
        """,
        """
        index jobs_by_start: CREATE INDEX jobs_by_start ON jobs(started_at)
        """,
        """
        index jobs_ended: CREATE INDEX jobs_ended ON jobs(kind, state, id, started_at, ended_at) WHERE ended_at IS NOT NULL
        """,
        """
        index jobs_good_backup: CREATE INDEX jobs_good_backup ON jobs(machine, started_at) WHERE kind = 'backup' AND state IN ('completed', 'completed with warnings')
        """,
        """
        index jobs_latest_ended: CREATE INDEX jobs_latest_ended ON jobs(kind, machine, ended_at) WHERE ended_at IS NOT NULL AND state NOT IN ('missed', 'cancelled') AND kind != 'group'
        """,
        """
        index jobs_open: CREATE INDEX jobs_open ON jobs(state) WHERE state IN ('queued', 'running')
        """,
        """
        table machine_blobs: CREATE TABLE machine_blobs (
            machine_id INTEGER NOT NULL REFERENCES machines(id),
            blob_id BLOB NOT NULL,
            verified INTEGER NOT NULL DEFAULT 0,
            added_at REAL NOT NULL,
            PRIMARY KEY (machine_id, blob_id)
        ) WITHOUT ROWID
        """,
        """
        table machines: CREATE TABLE machines (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL
        , credential_hash BLOB, enrolled_at REAL, removed_at REAL)
        """,
        """
        table packs: CREATE TABLE packs (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            blob_count INTEGER NOT NULL,
            created_at REAL NOT NULL
        )
        """,
        """
        table protection_groups: CREATE TABLE protection_groups (
            name TEXT PRIMARY KEY,
            schedule TEXT NOT NULL,
            paths TEXT NOT NULL,
            excludes TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        , pre_hook TEXT, post_hook TEXT, hook_timeout INTEGER NOT NULL DEFAULT 600)
        """,
        """
        table pruned_points: CREATE TABLE pruned_points (
            point_id BLOB PRIMARY KEY,
            machine TEXT NOT NULL,
            finished_at REAL NOT NULL,
            record BLOB NOT NULL,
            pruned_at REAL NOT NULL
        )
        """,
        """
        table recovery_points: CREATE TABLE recovery_points (
            id BLOB PRIMARY KEY,
            machine_id INTEGER NOT NULL REFERENCES machines(id),
            started_at REAL NOT NULL,
            finished_at REAL NOT NULL,
            root_tree BLOB NOT NULL,
            record BLOB NOT NULL
        )
        """,
        """
        index recovery_points_by_machine: CREATE INDEX recovery_points_by_machine ON recovery_points(machine_id, finished_at)
        """,
        """
        trigger recovery_points_forgotten: CREATE TRIGGER recovery_points_forgotten AFTER DELETE ON recovery_points BEGIN
            INSERT OR REPLACE INTO forgotten_points (id, root_tree, forgotten_at)
            VALUES (old.id, old.root_tree, (julianday('now') - 2440587.5) * 86400.0);
        END
        """,
        """
        table retention_policies: CREATE TABLE retention_policies (
            machine TEXT PRIMARY KEY,
            relay_days INTEGER,
            relay_last INTEGER,
            vault_daily INTEGER,
            vault_weekly INTEGER,
            vault_monthly INTEGER,
            vault_yearly INTEGER,
            updated_at REAL NOT NULL
        )
        """,
        """
        table vault_blobs: CREATE TABLE vault_blobs (
            blob_id BLOB PRIMARY KEY,
            sent_at REAL NOT NULL
        , pack TEXT, pack_offset INTEGER, pack_length INTEGER, pack_kind INTEGER) WITHOUT ROWID
        """,
        """
        index vault_blobs_pack: CREATE INDEX vault_blobs_pack ON vault_blobs (pack)
        """,
        """
        table vault_packs: CREATE TABLE vault_packs (
            pack TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            sent_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
    ]
}

/// Opens a store the binary made, in this process, with the migrations the binary registers (see
/// Sources/outpost/IndexSchema.swift); without them its index would count as newer than this build.
func openStoreAsTheBinaryDoes(_ path: String) throws -> Store {
    StoreIndex.registerMigrations(
        MachineCatalog.migrations + ForwardingLedger.migrations + RetentionSettings.migrations + ProtectionGroups.migrations
            + AlertBook.migrations + ConsoleAccounts.migrations)
    return try Store.open(at: path, purpose: "the test")
}
