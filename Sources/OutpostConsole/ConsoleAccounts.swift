import Crypto
import CryptoExtras
import Foundation
import GRDB
import OutpostCore
import OutpostStore

/// The console's administrators, their sessions and one-time login links, in the relay's index (schema v13).
/// Passwords are kept as scrypt hashes (N 2^15, r 8, p 1, a random salt); session and link tokens only as their
/// SHA-256, so a copy of the index opens no session. A machine's credential is not an administrator's: the two
/// live in different tables and the console never reads the machines'.
public struct ConsoleAccounts: Sendable {
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
    static let scryptN = 1 << 15

    // MARK: Administrators

    /// Adds an administrator with a password (at least 12 characters), or without one (a login link only).
    public func add(_ name: String, password: String?) throws {
        if let problem = MachineName.problem(name) {
            throw StoreError(.invalid, problem.replacingOccurrences(of: "machine name", with: "administrator name"))
        }
        if let password, password.count < 12 {
            throw StoreError(.invalid, "the password of \(name) is \(password.count) characters long; give at least 12")
        }
        let hash = try password.map { try Self.hash(password: $0) }
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

    // MARK: Passwords

    static func hash(password: String) throws -> String {
        var salt = [UInt8](repeating: 0, count: 16)
        for i in salt.indices { salt[i] = UInt8.random(in: 0...255) }
        let key = try derive(password, salt: salt, n: scryptN)
        return "scrypt$\(scryptN)$8$1$" + Data(salt).base64EncodedString() + "$" + key.base64EncodedString()
    }

    static func derive(_ password: String, salt: [UInt8], n: Int) throws -> Data {
        let key = try KDF.Scrypt.deriveKey(
            from: Array(password.utf8), salt: salt, outputByteCount: 32, rounds: n, blockSize: 8, parallelism: 1, maxMemory: 64 << 20)
        return key.withUnsafeBytes { Data($0) }
    }

    static func verify(password: String, against stored: String) -> Bool {
        let parts = stored.split(separator: "$").map(String.init)
        guard parts.count == 6, parts[0] == "scrypt", let n = Int(parts[1]), n >= 1 << 10, n <= 1 << 20,
            let salt = Data(base64Encoded: parts[4]), let expected = Data(base64Encoded: parts[5]),
            let derived = try? derive(password, salt: Array(salt), n: n)
        else { return false }
        // Constant time: every byte compared.
        guard derived.count == expected.count else { return false }
        return zip(derived, expected).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    // MARK: Sessions

    public struct Session: Sendable, Equatable {
        public var admin: String
        public var token: String
        public var csrf: String
    }

    static func token() -> String { RandomToken.hex(32) }
    static func digest(_ token: String) -> Data { Data(SHA256.hash(data: Data(token.utf8))) }

    /// A session for the administrator when the password is right; nil otherwise (unknown name or wrong
    /// password look the same, and cost the same scrypt).
    public func login(_ name: String, password: String) throws -> Session? {
        let stored = try index.read("reading an administrator") { db in
            try String.fetchOne(db, sql: "SELECT password FROM console_admins WHERE name = ?", arguments: [name])
        }
        let ok = Self.verify(password: password, against: stored ?? Self.decoy)
        guard ok, stored != nil else { return nil }
        return try open(name)
    }

    /// A hash no password matches, verified for unknown names so that they take as long as known ones.
    static let decoy = "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

    private func open(_ name: String) throws -> Session {
        let s = Session(admin: name, token: Self.token(), csrf: Self.token())
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
        return Session(admin: row["admin"], token: token, csrf: row["csrf"])
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

enum RandomToken {
    static func hex(_ bytes: Int) -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }
}
