import Crypto
import Foundation
import GRDB
import OutpostCore
import OutpostStore

/// A protected machine as the relay knows it.
public struct MachineRecord: Sendable, Equatable, Codable {
    public var id: Int64
    public var name: String
    public var enrolledAt: Date?
    public var removedAt: Date?
    public var pendingTokenExpiresAt: Date?
    public var recoveryPoints: Int
    public var lastPointAt: Date?
    public var isActive: Bool { enrolledAt != nil && removedAt == nil }
}

/// The relay's machine authentication: its catalog of protected machines, kept in the store's index (schema v2):
/// enrollment tokens and credentials (both stored as SHA-256 hashes, never in clear), and the blobs each machine
/// has proven it holds.
public struct MachineCatalog: Sendable {
    let index: StoreIndex
    let credentials: CredentialCache

    public init(store: Store) {
        index = store.index
        credentials = CredentialCache(stampPath: index.path + ".credentials")
    }

    /// The catalog's tables in the store's index (docs/format.md §9): registered by the binary before it opens a
    /// store (`StoreIndex.registerMigrations`), so that every store has them, empty on a local one.
    public static let migrations = [
        // The relay's catalog of protected machines: credentials, enrollment tokens, and which blobs each
        // machine has proven it holds (the basis of per-machine dedup answers and of read access).
        IndexMigration(
            "v2",
            sql: """
                ALTER TABLE machines ADD COLUMN credential_hash BLOB;
                ALTER TABLE machines ADD COLUMN enrolled_at REAL;
                ALTER TABLE machines ADD COLUMN removed_at REAL;
                CREATE TABLE enrollment_tokens (
                    token_hash BLOB PRIMARY KEY,
                    machine TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    expires_at REAL NOT NULL,
                    used_at REAL
                );
                CREATE TABLE machine_blobs (
                    machine_id INTEGER NOT NULL REFERENCES machines(id),
                    blob_id BLOB NOT NULL,
                    verified INTEGER NOT NULL DEFAULT 0,
                    added_at REAL NOT NULL,
                    PRIMARY KEY (machine_id, blob_id)
                ) WITHOUT ROWID;
                """)
    ]

    static func hash(_ secret: String) -> Data { Data(SHA256.hash(data: Array(secret.utf8))) }

    /// Registers a machine name with a one-time enrollment token. Refuses a name that an enrolled machine uses.
    public func addMachine(_ name: String, token: String, expiresAt: Date, now: Date = Date()) throws {
        if let problem = MachineName.problem(name) { throw StoreError(.invalid, problem) }
        try index.write("adding machine \(name)") { db in
            if let row = try Row.fetchOne(db, sql: "SELECT credential_hash, removed_at FROM machines WHERE name = ?", arguments: [name]),
                row["credential_hash"] as Data? != nil, row["removed_at"] as Double? == nil
            {
                throw StoreError(
                    .taken,
                    "a protected machine named \(name) is already enrolled; two machines cannot share a name — choose another, or `outpost relay remove-machine` the old one first"
                )
            }
            try db.execute(sql: "INSERT OR IGNORE INTO machines (name, created_at) VALUES (?, ?)", arguments: [name, now.timeIntervalSince1970])
            try db.execute(sql: "DELETE FROM enrollment_tokens WHERE machine = ? AND used_at IS NULL", arguments: [name])
            try db.execute(
                sql: "INSERT INTO enrollment_tokens (token_hash, machine, created_at, expires_at) VALUES (?, ?, ?, ?)",
                arguments: [Self.hash(token), name, now.timeIntervalSince1970, expiresAt.timeIntervalSince1970])
        }
    }

    public enum EnrollmentFailure: Error, Sendable { case unknown, used, expired, taken }

    /// Trades a token for a credential (stored hashed). Tokens are single-use and expire.
    public func enroll(token: String, credential: String, now: Date = Date()) throws -> Result<String, EnrollmentFailure> {
        try index.write("enrolling a machine") { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT machine, expires_at, used_at FROM enrollment_tokens WHERE token_hash = ?",
                    arguments: [Self.hash(token)])
            else { return .failure(.unknown) }
            if row["used_at"] as Double? != nil { return .failure(.used) }
            if (row["expires_at"] as Double) < now.timeIntervalSince1970 { return .failure(.expired) }
            let name: String = row["machine"]
            try db.execute(
                sql: "UPDATE enrollment_tokens SET used_at = ? WHERE token_hash = ?", arguments: [now.timeIntervalSince1970, Self.hash(token)])
            try db.execute(
                sql: "UPDATE machines SET credential_hash = ?, enrolled_at = ?, removed_at = NULL WHERE name = ?",
                arguments: [Self.hash(credential), now.timeIntervalSince1970, name])
            return .success(name)
        }
    }

    /// The machine's id when `credential` is its current credential (constant-time comparison of hashes),
    /// from the cache when it was checked since the last change of credentials (`CredentialCache`).
    public func authenticate(machine: String, credential: String) throws -> Int64? {
        let key = machine + "\u{0}" + credential
        let stamp = credentials.currentStamp()
        if let known = credentials.lookUp(key, stamp: stamp) { return known.id }
        guard let id = try checkCredential(machine: machine, credential: credential) else { return nil }
        credentials.remember(key, id: id, name: machine, stamp: stamp)
        return id
    }

    private func checkCredential(machine: String, credential: String) throws -> Int64? {
        let row = try index.readStatements("authenticating \(machine)") { db in
            try Row.fetchOne(
                try db.cachedStatement(sql: "SELECT id, credential_hash FROM machines WHERE name = ? AND removed_at IS NULL"), arguments: [machine])
        }
        guard let row, let stored = row["credential_hash"] as Data? else { return nil }
        let given = Self.hash(credential)
        guard stored.count == given.count else { return nil }
        var diff: UInt8 = 0
        for (a, b) in zip(stored, given) { diff |= a ^ b }
        return diff == 0 ? row["id"] : nil
    }

    /// Stops protecting a machine: its credential stops working; its recovery points stay until retention.
    public func removeMachine(_ name: String, now: Date = Date()) throws {
        let changed = try index.write("removing machine \(name)") { db -> Int in
            try db.execute(
                sql: "UPDATE machines SET credential_hash = NULL, removed_at = ? WHERE name = ? AND removed_at IS NULL",
                arguments: [now.timeIntervalSince1970, name])
            let changed = db.changesCount
            try db.execute(sql: "DELETE FROM enrollment_tokens WHERE machine = ? AND used_at IS NULL", arguments: [name])
            return changed
        }
        if changed == 0 { throw StoreError(.notFound, "no protected machine is named \(name); list them with `outpost relay machines`") }
        // A serving relay (another process) forgets the credentials it cached: this one stops working now.
        do { try CredentialCache.touch(stampPath: credentials.stampPath) } catch {
            throw StoreError(
                .io,
                "machine \(name) was removed, but \(credentials.stampPath) could not be rewritten (\(error)); a running relay accepts its credential until it restarts: restart it"
            )
        }
    }

    public func machines(now: Date = Date()) throws -> [MachineRecord] {
        try index.read("listing machines") { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT m.id, m.name, m.enrolled_at, m.removed_at,
                           (SELECT MAX(expires_at) FROM enrollment_tokens t WHERE t.machine = m.name AND t.used_at IS NULL AND t.expires_at > ?) AS token_expires,
                           (SELECT COUNT(*) FROM recovery_points r WHERE r.machine_id = m.id) AS points,
                           (SELECT MAX(finished_at) FROM recovery_points r WHERE r.machine_id = m.id) AS last_point
                    FROM machines m ORDER BY m.name
                    """, arguments: [now.timeIntervalSince1970]
            ).map { row in
                MachineRecord(
                    id: row["id"], name: row["name"],
                    enrolledAt: (row["enrolled_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                    removedAt: (row["removed_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
                    pendingTokenExpiresAt: (row["token_expires"] as Double?).map(Date.init(timeIntervalSince1970:)),
                    recoveryPoints: row["points"],
                    lastPointAt: (row["last_point"] as Double?).map(Date.init(timeIntervalSince1970:)))
            }
        }
    }

    // MARK: What each machine holds

    /// Of `ids`, those the machine has proven it holds; `verifiedOnly` narrows to trees already checked.
    public func owned(by machine: Int64, _ ids: [BlobID], verifiedOnly: Bool = false) throws -> Set<BlobID> {
        var found = Set<BlobID>()
        if ids.isEmpty { return found }
        try index.readStatements("looking up a machine's blobs") { db in
            try StoreIndex.forEachRow(db, ids, leading: [machine]) {
                "SELECT blob_id FROM machine_blobs WHERE machine_id = ? AND blob_id IN (\($0))\(verifiedOnly ? " AND verified = 1" : "")"
            } each: { row in
                if let id = try StoreIndex.blobID(row, 0) { found.insert(id) }
            }
        }
        return found
    }

    /// Records that the machine holds `ids`; returns those it was not yet known to hold (for unverified marks).
    @discardableResult
    /// Of `ids`, those the machine has proven it holds and the index still holds: one query for both questions
    /// (a commit asks them for every chunk of the point).
    public func ownedAndIndexed(by machine: Int64, _ ids: [BlobID]) throws -> Set<BlobID> {
        var found = Set<BlobID>()
        if ids.isEmpty { return found }
        try index.readStatements("looking up a machine's blobs") { db in
            try StoreIndex.forEachRow(db, ids, leading: [machine]) {
                "SELECT mb.blob_id FROM machine_blobs mb JOIN blobs b ON b.id = mb.blob_id WHERE mb.machine_id = ? AND mb.blob_id IN (\($0))"
            } each: { row in
                if let id = try StoreIndex.blobID(row, 0) { found.insert(id) }
            }
        }
        return found
    }

    public func addOwned(by machine: Int64, _ ids: some Collection<BlobID>, verified: Bool = false, now: Date = Date()) throws -> Set<BlobID> {
        guard !ids.isEmpty else { return [] }
        return try index.write("recording a machine's blobs") { db in
            var added = Set<BlobID>()
            if verified {
                let st = try db.cachedStatement(
                    sql:
                        "INSERT INTO machine_blobs (machine_id, blob_id, verified, added_at) VALUES (?, ?, 1, ?) ON CONFLICT DO UPDATE SET verified = 1"
                )
                for id in ids { try st.execute(arguments: [machine, id.data, now.timeIntervalSince1970]) }
            } else {
                let st = try db.cachedStatement(
                    sql: "INSERT OR IGNORE INTO machine_blobs (machine_id, blob_id, verified, added_at) VALUES (?, ?, 0, ?)")
                for id in ids {
                    try st.execute(arguments: [machine, id.data, now.timeIntervalSince1970])
                    if db.changesCount > 0 { added.insert(id) }
                }
            }
            return added
        }
    }

    /// Gives a machine back the blobs of one of its recovery points rebuilt from the vault (`relay rebuild`): read
    /// access once it enrolls again. Nothing when the relay knows no machine of that name.
    public func addOwned(byMachineNamed name: String, _ blobs: [BlobID], verifiedTrees: [BlobID]) throws {
        guard let machine = try machineID(named: name) else { return }
        try addOwned(by: machine, blobs)
        try addOwned(by: machine, verifiedTrees, verified: true)
    }

    /// Drops the records of blobs a machine held that neither the relay nor the vault holds any more (after the
    /// vault's retention deleted packs). Records younger than `grace` stay: a push may have uploaded the blob
    /// into a pack not sealed yet, and its commit checks the record.
    @discardableResult
    public func forgetUnheld(grace: TimeInterval = 24 * 3600, now: Date = Date()) throws -> Int {
        try index.write("dropping records of blobs no tier holds") { db in
            // vault_blobs comes with the forwarder's migration, which every store the binary opens has.
            let vaulted =
                try db.tableExists("vault_blobs") ? "AND NOT EXISTS (SELECT 1 FROM vault_blobs v WHERE v.blob_id = machine_blobs.blob_id)" : ""
            try db.execute(
                sql: """
                    DELETE FROM machine_blobs WHERE added_at < ?
                    AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = machine_blobs.blob_id)
                    """ + vaulted, arguments: [now.timeIntervalSince1970 - grace])
            return db.changesCount
        }
    }

    public func machineID(named name: String) throws -> Int64? {
        try index.read("looking up a machine") { db in try Int64.fetchOne(db, sql: "SELECT id FROM machines WHERE name = ?", arguments: [name]) }
    }

    public func machineName(_ id: Int64) throws -> String? {
        try index.read("looking up a machine") { db in try String.fetchOne(db, sql: "SELECT name FROM machines WHERE id = ?", arguments: [id]) }
    }
}
