import GRDB
import Synchronization

/// One step of the index schema: a GRDB migration, named "v<N>" (docs/format.md §9), applied once in the order
/// of N. The store owns "v1" and "v6"; a module that keeps tables of its own in the index (the relay's machine catalog,
/// the forwarder's ledger) owns its steps and registers them with `StoreIndex.registerMigrations`.
public struct IndexMigration: Sendable, Equatable {
    public let identifier: String
    public let sql: String

    public init(_ identifier: String, sql: String) {
        precondition(identifier.first == "v" && Int(identifier.dropFirst()) != nil, "an index migration is named v<N>, not \(identifier)")
        self.identifier = identifier
        self.sql = sql
    }

    var version: Int { Int(identifier.dropFirst()) ?? 0 }
}

extension StoreIndex {
    /// The store's own schema: packs, blobs, machines by name and the recovery point catalog.
    static let storeSchema = IndexMigration(
        "v1",
        sql: """
            CREATE TABLE packs (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                size INTEGER NOT NULL,
                blob_count INTEGER NOT NULL,
                created_at REAL NOT NULL
            );
            CREATE TABLE blobs (
                id BLOB PRIMARY KEY,
                kind INTEGER NOT NULL,
                pack_id INTEGER NOT NULL REFERENCES packs(id),
                offset INTEGER NOT NULL,
                stored_length INTEGER NOT NULL,
                raw_length INTEGER NOT NULL,
                compression INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE INDEX blobs_by_pack ON blobs(pack_id);
            CREATE TABLE machines (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                created_at REAL NOT NULL
            );
            CREATE TABLE recovery_points (
                id BLOB PRIMARY KEY,
                machine_id INTEGER NOT NULL REFERENCES machines(id),
                started_at REAL NOT NULL,
                finished_at REAL NOT NULL,
                root_tree BLOB NOT NULL,
                record BLOB NOT NULL
            );
            CREATE INDEX recovery_points_by_machine ON recovery_points(machine_id, finished_at);
            """)

    /// The store's second step, for online gc (docs/format.md §13): when each blob was last relied on (stored, or
    /// answered present to a push; existing blobs take their pack's age), the points forgotten within gc's grace
    /// period (they still protect their data; a trigger records every deletion, whoever makes it), and a counter of
    /// gc runs that deleted something (a local commit checks its point again when it moved).
    static let onlineGCSchema = IndexMigration(
        "v6",
        sql: """
            ALTER TABLE blobs ADD COLUMN touched_at REAL NOT NULL DEFAULT 0;
            UPDATE blobs SET touched_at = COALESCE((SELECT created_at FROM packs WHERE packs.id = blobs.pack_id), 0);
            CREATE INDEX blobs_touched_trees ON blobs(touched_at) WHERE kind = 1;
            CREATE TABLE forgotten_points (
                id BLOB PRIMARY KEY,
                root_tree BLOB NOT NULL,
                forgotten_at REAL NOT NULL
            ) WITHOUT ROWID;
            CREATE TRIGGER recovery_points_forgotten AFTER DELETE ON recovery_points BEGIN
                INSERT OR REPLACE INTO forgotten_points (id, root_tree, forgotten_at)
                VALUES (old.id, old.root_tree, (julianday('now') - 2440587.5) * 86400.0);
            END;
            CREATE TABLE gc_state (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                generation INTEGER NOT NULL
            );
            INSERT INTO gc_state (id, generation) VALUES (1, 0);
            """)

    /// The store's own steps, applied to every store.
    static let ownSchema = [
        storeSchema, onlineGCSchema, JobLog.schema, JobLog.agentSchema, JobLog.goodBackupSchema, JobLog.latestEndedSchema,
        JobLog.talliesSchema,
    ]

    /// Migrations other modules add (the relay's machine catalog, the forwarder's ledger), in no order.
    private static let added = Mutex<[IndexMigration]>([])

    /// Adds index migrations that every store opened afterwards applies (once, in the order of their versions,
    /// after the store's own "v1"). The binary registers every module's before it opens a store, so that each
    /// store carries the whole schema of docs/format.md §9, and an index holding a migration nobody registered
    /// counts as newer than this build. Registering the same migration again changes nothing.
    public static func registerMigrations(_ migrations: [IndexMigration]) {
        added.withLock { list in
            for m in migrations {
                if let known = (list + ownSchema).first(where: { $0.identifier == m.identifier }) {
                    precondition(known == m, "two index migrations are named \(m.identifier)")
                    continue
                }
                list.append(m)
            }
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        for step in (ownSchema + added.withLock { $0 }).sorted(by: { $0.version < $1.version }) {
            m.registerMigration(step.identifier) { db in try db.execute(sql: step.sql) }
        }
        return m
    }
}
