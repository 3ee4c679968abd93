import Foundation
import OutpostCore
import OutpostHTTP
import OutpostObjects
import OutpostVault
import Synchronization

/// The vault console's administrators (issue 13), in the vault's object store, so that every `vault serve` node
/// over one bucket has the same ones (docs/console.md, docs/vault.md §20):
///
/// - `meta/admins/<name>.json`: the name, a random id, the scrypt hash (none: login links only), when added.
///   Added with put-if-absent, so two nodes adding one name cannot both succeed; removed by deleting it.
/// - `meta/admin-links/<SHA-256 of the token, hex>.json`: a login link's administrator (name and id) and expiry;
///   `….used` beside it, put-if-absent, spends it: once, whichever node the link is opened on.
///
/// Sessions are in the memory of the node that opened them (a restart or another node asks to log in again). A
/// node checks a session's administrator in the store at most every `recheck`: removing one ends its sessions on
/// every node within that time, and a name removed and added again does not revive the old sessions (the id
/// differs).
public final class VaultAdmins: ConsoleAccountStore, Sendable {
    static let adminPrefix = "meta/admins/"
    static let linkPrefix = "meta/admin-links/"
    public static let linkLifetime: TimeInterval = 15 * 60
    public static let idleTimeout: TimeInterval = 30 * 60
    public static let maxAge: TimeInterval = 12 * 3600
    static let recheck: TimeInterval = 5

    let objects: any ObjectStore
    let clock: @Sendable () -> Date

    struct Record: Codable, Sendable {
        var format = "outpost-vault-admin"
        var version = 1
        var id: String
        var name: String
        var password: String?
        var createdAt: Date
        enum CodingKeys: String, CodingKey { case format, version, id, name, password, createdAt = "created_at" }
    }

    struct Link: Codable, Sendable {
        var format = "outpost-vault-admin-link"
        var version = 1
        var admin: String
        var adminID: String
        var expiresAt: Date
        enum CodingKeys: String, CodingKey { case format, version, admin, adminID = "admin_id", expiresAt = "expires_at" }
    }

    struct Live: Sendable {
        var admin: String
        var adminID: String
        var csrf: String
        var createdAt: Date
        var lastSeen: Date
        var checkedAt: Date
    }

    /// Open sessions of this node, by the SHA-256 of their token.
    private let sessions = Mutex<[Data: Live]>([:])

    public init(objects: any ObjectStore, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.objects = objects
        self.clock = clock
    }

    static func adminKey(_ name: String) -> String { adminPrefix + name + ".json" }
    static func linkKey(_ digest: Data) -> String { linkPrefix + Hex.encode(Array(digest)) }

    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.dateEncodingStrategy = .iso8601
        return e
    }

    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }

    /// The administrator named `name`, or nil. A name that is not one (it could not be stored) is nil too.
    func record(_ name: String) throws -> Record? {
        guard MachineName.problem(name) == nil, let bytes = try objects.get(Self.adminKey(name)) else { return nil }
        guard let r = try? Self.decoder().decode(Record.self, from: Data(bytes)), r.format == "outpost-vault-admin" else {
            throw VaultError(
                .corrupt, "the vault administrator \(Self.adminKey(name)) is damaged; remove it with `outpost vault admin remove \(name)`")
        }
        guard r.version <= 1 else {
            throw VaultError(.unsupportedVersion, "the vault administrator \(Self.adminKey(name)) has version \(r.version): upgrade outpost")
        }
        return r
    }

    // MARK: Administrators

    /// Adds an administrator with a password (at least 12 characters), or without one (login links only).
    public func add(_ name: String, password: String?) throws {
        if let problem = ConsolePassword.problem(name: name, password: password) { throw VaultError(.invalid, problem) }
        let r = Record(id: RandomSecret.make(bytes: 8), name: name, password: try password.map(ConsolePassword.hash), createdAt: clock())
        guard try objects.putIfAbsent(Self.adminKey(name), Array(try Self.encoder().encode(r))) else {
            throw VaultError(.taken, "a vault administrator named \(name) exists; remove it first, or give another name")
        }
    }

    /// Removes an administrator; its sessions end on every node within `recheck` seconds.
    public func remove(_ name: String) throws {
        guard try record(name) != nil else {
            throw VaultError(.notFound, "no vault administrator is named \(Terminal.quoted(name)); list them with `outpost vault admin list`")
        }
        try objects.delete(Self.adminKey(name))
        sessions.withLock { s in s = s.filter { $0.value.admin != name } }
    }

    public struct Admin: Sendable, Codable, Equatable {
        public var name: String
        public var hasPassword: Bool
        public var createdAt: Date
    }

    public func list() throws -> [Admin] {
        try objects.list(prefix: Self.adminPrefix).compactMap { o -> Admin? in
            guard o.key.hasSuffix(".json") else { return nil }
            let name = String(o.key.dropFirst(Self.adminPrefix.count).dropLast(5))
            return try record(name).map { Admin(name: $0.name, hasPassword: $0.password != nil, createdAt: $0.createdAt) }
        }
    }

    // MARK: Sessions

    public func login(_ name: String, password: String) throws -> ConsoleSession? {
        let r = try record(name)
        let ok = ConsolePassword.verify(password, against: r?.password ?? ConsolePassword.decoy)
        guard ok, let r, r.password != nil else { return nil }
        return open(r)
    }

    private func open(_ r: Record) -> ConsoleSession {
        let s = ConsoleSession(admin: r.name, token: ConsoleToken.make(), csrf: ConsoleToken.make())
        let now = clock()
        sessions.withLock {
            $0[ConsoleToken.digest(s.token)] = Live(admin: r.name, adminID: r.id, csrf: s.csrf, createdAt: now, lastSeen: now, checkedAt: now)
        }
        return s
    }

    public func session(token: String) throws -> ConsoleSession? {
        let now = clock()
        let key = ConsoleToken.digest(token)
        guard let live = sessions.withLock({ $0[key] }) else { return nil }
        if now.timeIntervalSince(live.lastSeen) > Self.idleTimeout || now.timeIntervalSince(live.createdAt) > Self.maxAge {
            sessions.withLock { _ = $0.removeValue(forKey: key) }
            return nil
        }
        if now.timeIntervalSince(live.checkedAt) > Self.recheck {
            // Removed (or removed and added again) through any node: the session ends here too.
            guard try record(live.admin)?.id == live.adminID else {
                sessions.withLock { _ = $0.removeValue(forKey: key) }
                return nil
            }
            sessions.withLock { $0[key]?.checkedAt = now }
        }
        sessions.withLock { $0[key]?.lastSeen = now }
        return ConsoleSession(admin: live.admin, token: token, csrf: live.csrf)
    }

    public func logout(token: String) throws {
        _ = sessions.withLock { $0.removeValue(forKey: ConsoleToken.digest(token)) }
    }

    // MARK: Login links

    /// A one-time login link's token for the administrator, valid 15 minutes. Links that expired are deleted.
    public func loginLink(for name: String) throws -> String {
        guard let r = try record(name) else {
            throw VaultError(.notFound, "no vault administrator is named \(Terminal.quoted(name)); add it with `outpost vault admin add`")
        }
        let now = clock()
        for o in try objects.list(prefix: Self.linkPrefix) where o.key.hasSuffix(".json") {
            if let bytes = try objects.get(o.key), let l = try? Self.decoder().decode(Link.self, from: Data(bytes)), l.expiresAt < now {
                try objects.delete(o.key)
                try objects.delete(String(o.key.dropLast(5)) + ".used")
            }
        }
        let token = ConsoleToken.make()
        let link = Link(admin: r.name, adminID: r.id, expiresAt: now.addingTimeInterval(Self.linkLifetime))
        _ = try objects.putIfAbsent(Self.linkKey(ConsoleToken.digest(token)) + ".json", Array(try Self.encoder().encode(link)))
        return token
    }

    public func redeem(link token: String) throws -> ConsoleSession? {
        let key = Self.linkKey(ConsoleToken.digest(token))
        guard let bytes = try objects.get(key + ".json"), let l = try? Self.decoder().decode(Link.self, from: Data(bytes)),
            l.expiresAt > clock(), let r = try record(l.admin), r.id == l.adminID
        else { return nil }
        // Spent once, on whichever node asks first.
        guard try objects.putIfAbsent(key + ".used", Array(ISO8601DateFormatter().string(from: clock()).utf8)) else { return nil }
        return open(r)
    }
}
