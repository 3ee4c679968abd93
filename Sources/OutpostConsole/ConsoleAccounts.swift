import Foundation
import GRDB
import OutpostCore
import OutpostStore

/// The console's administrators, their sessions and one-time login links, in the relay's index (schema v13).
/// Passwords are kept as scrypt hashes (N 2^15, r 8, p 1, a random salt); session and link tokens only as their
/// SHA-256, so a copy of the index opens no session. A machine's credential is not an administrator's: the two
/// live in different tables and the console never reads the machines'. Passwords and tokens: `ConsolePassword`,
/// `ConsoleToken` (shared with the vault's console).
public struct ConsoleAccounts: ConsoleAccountStore {
    let index: StoreIndex
    let clock: WallClock

    public init(store: Store, clock: WallClock = .fromEnvironment()) {
        index = store.index
        self.clock = clock
    }

    public static let migrations = [
        IndexMigration(
            "v13",
            sql: """
                CREATE TABLE console_admins (
                    name TEXT PRIMARY KEY,
                    password TEXT,
                    created_at REAL NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE console_sessions (
                    token_hash BLOB PRIMARY KEY,
                    admin TEXT NOT NULL REFERENCES console_admins(name) ON DELETE CASCADE,
                    csrf TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    last_seen REAL NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE console_links (
                    token_hash BLOB PRIMARY KEY,
                    admin TEXT NOT NULL REFERENCES console_admins(name) ON DELETE CASCADE,
                    expires_at REAL NOT NULL,
                    used_at REAL
                ) WITHOUT ROWID;
                """)
    ]

    /// Sessions end after this long without a request, and after `maxAge` in any case.
    public var idleTimeout: TimeInterval = 30 * 60
    public var maxAge: TimeInterval = 12 * 3600
    public static let linkLifetime: TimeInterval = 15 * 60

    // MARK: Administrators

    /// Adds an administrator with a password (at least 12 characters), or without one (a login link only).
    public func add(_ name: String, password: String?) throws {
        if let problem = ConsolePassword.problem(name: name, password: password) { throw StoreError(.invalid, problem) }
        let hash = try password.map { try ConsolePassword.hash($0) }
        try index.write("adding an administrator") { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM console_admins WHERE name = ?", arguments: [name]) ?? false {
                throw StoreError(.taken, "an administrator named \(name) exists; remove it first, or give another name")
            }
            try db.execute(
                sql: "INSERT INTO console_admins (name, password, created_at) VALUES (?, ?, ?)",
                arguments: [name, hash, clock.now().timeIntervalSince1970])
        }
    }

    /// Removes an administrator and ends its sessions.
    public func remove(_ name: String) throws {
        try index.write("removing an administrator") { db in
            try db.execute(sql: "DELETE FROM console_sessions WHERE admin = ?", arguments: [name])
            try db.execute(sql: "DELETE FROM console_links WHERE admin = ?", arguments: [name])
            try db.execute(sql: "DELETE FROM console_admins WHERE name = ?", arguments: [name])
            if db.changesCount == 0 {
                throw StoreError(.notFound, "no administrator is named \(name); list them with `outpost relay admin list`")
            }
        }
    }

    public struct Admin: Sendable, Codable, Equatable {
        public var name: String
        public var hasPassword: Bool
        public var createdAt: Date
        public var sessions: Int
    }

    public func list() throws -> [Admin] {
        try index.read("listing administrators") { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT name, password IS NOT NULL AS has_password, created_at,
                    (SELECT COUNT(*) FROM console_sessions s WHERE s.admin = a.name) AS sessions
                    FROM console_admins a ORDER BY name
                    """
            ).map {
                Admin(
                    name: $0["name"], hasPassword: $0["has_password"], createdAt: Date(timeIntervalSince1970: $0["created_at"]),
                    sessions: $0["sessions"])
            }
        }
    }

    // MARK: Sessions

    public typealias Session = ConsoleSession

    static func token() -> String { ConsoleToken.make() }
    static func digest(_ token: String) -> Data { ConsoleToken.digest(token) }

    /// A session for the administrator when the password is right; nil otherwise (unknown name or wrong
    /// password look the same, and cost the same scrypt).
    public func login(_ name: String, password: String) throws -> Session? {
        let stored = try index.read("reading an administrator") { db in
            try String.fetchOne(db, sql: "SELECT password FROM console_admins WHERE name = ?", arguments: [name])
        }
        let ok = ConsolePassword.verify(password, against: stored ?? ConsolePassword.decoy)
        guard ok, stored != nil else { return nil }
        return try open(name)
    }

    private func open(_ name: String) throws -> Session {
        let s = ConsoleSession(admin: name, token: Self.token(), csrf: Self.token())
        let t = clock.now().timeIntervalSince1970
        try index.write("opening a console session") { db in
            try db.execute(
                sql: "INSERT INTO console_sessions (token_hash, admin, csrf, created_at, last_seen) VALUES (?, ?, ?, ?, ?)",
                arguments: [Self.digest(s.token), name, s.csrf, t, t])
        }
        return s
    }

    /// The session a cookie names, while it is neither idle too long nor too old; its last use is refreshed.
    public func session(token: String) throws -> Session? {
        let now = clock.now().timeIntervalSince1970
        let key = Self.digest(token)
        guard
            let row = try index.read(
                "reading a console session",
                { db in try Row.fetchOne(db, sql: "SELECT * FROM console_sessions WHERE token_hash = ?", arguments: [key]) })
        else { return nil }
        let lastSeen: Double = row["last_seen"], created: Double = row["created_at"]
        if now - lastSeen > idleTimeout || now - created > maxAge {
            try index.write("ending a console session") { db in
                try db.execute(sql: "DELETE FROM console_sessions WHERE token_hash = ?", arguments: [key])
            }
            return nil
        }
        if now - lastSeen > 30 {
            try index.write("refreshing a console session") { db in
                try db.execute(sql: "UPDATE console_sessions SET last_seen = ? WHERE token_hash = ?", arguments: [now, key])
            }
        }
        return ConsoleSession(admin: row["admin"], token: token, csrf: row["csrf"])
    }

    public func logout(token: String) throws {
        try index.write("ending a console session") { db in
            try db.execute(sql: "DELETE FROM console_sessions WHERE token_hash = ?", arguments: [Self.digest(token)])
        }
    }

    // MARK: Login links

    /// A one-time login link's token for the administrator, valid 15 minutes.
    public func loginLink(for name: String) throws -> String {
        let token = Self.token()
        try index.write("making a login link") { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM console_admins WHERE name = ?", arguments: [name]) ?? false else {
                throw StoreError(.notFound, "no administrator is named \(name); add it with `outpost relay admin add`")
            }
            try db.execute(
                sql: "INSERT INTO console_links (token_hash, admin, expires_at) VALUES (?, ?, ?)",
                arguments: [Self.digest(token), name, clock.now().timeIntervalSince1970 + Self.linkLifetime])
        }
        return token
    }

    /// Trades a link's token for a session, once, before it expires.
    public func redeem(link token: String) throws -> Session? {
        let now = clock.now().timeIntervalSince1970
        let admin = try index.write("using a login link") { db -> String? in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM console_links WHERE token_hash = ?", arguments: [Self.digest(token)]),
                (row["used_at"] as Double?) == nil, (row["expires_at"] as Double) > now
            else { return nil }
            try db.execute(sql: "UPDATE console_links SET used_at = ? WHERE token_hash = ?", arguments: [now, Self.digest(token)])
            return row["admin"]
        }
        return try admin.map { try open($0) }
    }
}
