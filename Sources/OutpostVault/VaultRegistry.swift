import Crypto
import Foundation
import OutpostCore
import OutpostHTTP
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The relays registered with a vault and the credentials files issued for it, kept in registry.json.
/// Secrets are stored as SHA-256 hashes only.
public final class VaultRegistry: Sendable {
    public struct Relay: Codable, Sendable, Equatable {
        public var id: String
        public var name: String
        public var credentialHash: String
        public var registeredAt: Date
        public var removedAt: Date?
        /// Each time a recovery credentials file handed this container to a rebuilt relay (absent before any).
        public var takeovers: [Takeover]?
    }

    /// A rebuild that took the container over: when, under which relay name, and whether it proved it holds
    /// the container's key (false only for a container that had no verifier yet).
    public struct Takeover: Codable, Sendable, Equatable {
        public var at: Date
        public var relayName: String
        public var proven: Bool
    }

    public struct Issued: Codable, Sendable, Equatable {
        public var secretHash: String
        public var expiresAt: Date
        public var usedAt: Date?
        /// Set for a recovery credentials file: it re-attaches that relay's container instead of making a new one.
        public var recoverRelay: String?
    }

    struct State: Codable {
        var relays: [Relay] = []
        var issued: [Issued] = []
        /// mtime of registry.json when it was read: the file is re-read when another process (the
        /// `vault credentials` command) changed it.
        var loadedStamp: Double? = nil
        enum CodingKeys: String, CodingKey { case relays, issued }
    }

    let path: String
    private let state: Mutex<State>

    public init(path: String) throws {
        self.path = path
        state = Mutex(try Self.read(path))
    }

    static func stamp(_ path: String) -> Double? {
        guard let a = try? FileManager.default.attributesOfItem(atPath: path), let m = a[.modificationDate] as? Date else { return nil }
        return m.timeIntervalSince1970 + Double((a[.systemFileNumber] as? Int) ?? 0)
    }

    static func read(_ path: String) throws -> State {
        guard let data = FileManager.default.contents(atPath: path) else { return State() }
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        do {
            var s = try d.decode(State.self, from: data)
            s.loadedStamp = stamp(path)
            return s
        } catch { throw VaultError(.notAVault, "the vault registry \(path) is damaged: \(error)") }
    }

    /// Serialises read-modify-write of registry.json between processes (`vault serve` and `vault credentials`).
    private func withFileLock<T>(_ body: () throws -> T) throws -> T {
        let fd = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw VaultError(.invalid, "cannot open \(path).lock: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        flock(fd, LOCK_EX)
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    private func refresh(_ s: inout State) throws {
        if Self.stamp(path) != s.loadedStamp { s = try Self.read(path) }
    }

    static func hash(_ s: String) -> String { Hex.encode(Array(SHA256.hash(data: Array(s.utf8)))) }

    private func persist(_ s: inout State) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.dateEncodingStrategy = .iso8601
        try writeAtomically(Array(try e.encode(s)), to: path)
        s.loadedStamp = Self.stamp(path)
    }

    public func issue(secret: String, expiresAt: Date, recoverRelay: String? = nil) throws {
        try withFileLock { try issueLocked(secret: secret, expiresAt: expiresAt, recoverRelay: recoverRelay) }
    }

    private func issueLocked(secret: String, expiresAt: Date, recoverRelay: String?) throws {
        try state.withLock { s in
            try refresh(&s)
            let id = try recoverRelay.map { s.relays[try Self.resolve($0, in: s.relays, activeOnly: false)].id }
            s.issued.append(Issued(secretHash: Self.hash(secret), expiresAt: expiresAt, recoverRelay: id))
            try persist(&s)
        }
    }

    /// Finds one relay by id, else by name; several relays under one name (a registry written before names had
    /// to be unique) are refused with their ids, never resolved by guessing.
    static func resolve(_ idOrName: String, in relays: [Relay], activeOnly: Bool) throws -> Int {
        let pool = relays.indices.filter { !activeOnly || relays[$0].removedAt == nil }
        if let i = pool.first(where: { relays[$0].id == idOrName }) { return i }
        let named = pool.filter { relays[$0].name == idOrName }
        if named.count == 1 { return named[0] }
        if named.isEmpty {
            throw VaultError(
                .invalid, "no \(activeOnly ? "active " : "")relay \(RelayName.quoted(idOrName)) in this vault; list them with `outpost vault relays`")
        }
        let ids = named.map { relays[$0].id + (relays[$0].removedAt == nil ? "" : " (removed)") }.joined(separator: ", ")
        throw VaultError(.invalid, "\(named.count) relays are named \(RelayName.quoted(idOrName)) (ids \(ids)); give the id instead of the name")
    }

    /// `refused`: the credentials file cannot be used (401). `invalidName`: the name breaks the rule (400).
    /// `nameTaken`: an active relay has that name (409). The file stays unused in the last two cases.
    public enum RegisterOutcome: Sendable { case registered(Relay, credential: String), refused(String), invalidName(String), nameTaken(String) }

    /// Trades a credentials-file secret for a relay credential: single use, before expiry, at most `maxRelays`.
    /// `proven`: for a recovery file, whether the relay proved it holds the container's key (recorded).
    public func register(secret: String, relayName: String, maxRelays: Int, proven: Bool = false, now: Date = Date()) throws -> RegisterOutcome {
        try withFileLock { try registerLocked(secret: secret, relayName: relayName, maxRelays: maxRelays, proven: proven, now: now) }
    }

    private func registerLocked(secret: String, relayName: String, maxRelays: Int, proven: Bool, now: Date) throws -> RegisterOutcome {
        try state.withLock { s in
            try refresh(&s)
            guard let i = s.issued.firstIndex(where: { $0.secretHash == Self.hash(secret) }) else {
                return .refused(
                    "this vault credentials file was not issued by this vault (or belongs to another vault); download a new one with `outpost vault credentials`"
                )
            }
            if s.issued[i].usedAt != nil {
                return .refused("this vault credentials file was already used; download a new one with `outpost vault credentials`")
            }
            if s.issued[i].expiresAt < now {
                return .refused(
                    "this vault credentials file expired on \(s.issued[i].expiresAt.formatted(.iso8601)); download a new one with `outpost vault credentials`"
                )
            }
            let credential = RandomSecret.make()
            var relay: Relay
            if let recover = s.issued[i].recoverRelay, let j = s.relays.firstIndex(where: { $0.id == recover }) {
                s.relays[j].credentialHash = Self.hash(credential)
                s.relays[j].removedAt = nil
                s.relays[j].takeovers = (s.relays[j].takeovers ?? []) + [Takeover(at: now, relayName: relayName, proven: proven)]
                relay = s.relays[j]
            } else {
                if let problem = RelayName.problem(relayName) { return .invalidName(problem + "; register with another --name") }
                if let other = s.relays.first(where: { $0.removedAt == nil && $0.name == relayName }) {
                    return .nameTaken(
                        "a relay named \(RelayName.quoted(relayName)) is already registered with this vault (id \(other.id)): register under another --name, or rebuild that relay with `outpost vault credentials --recover \(other.id)`, or remove it first with `outpost vault remove-relay \(other.id)`"
                    )
                }
                if let other = s.relays.first(where: { $0.id == relayName }) {
                    return .nameTaken(
                        "\(RelayName.quoted(relayName)) is the id of another relay of this vault (named \(RelayName.quoted(other.name))): register under another --name"
                    )
                }
                let active = s.relays.filter { $0.removedAt == nil }.count
                if active >= maxRelays {
                    return .refused("this vault already serves \(active) relays, its limit (\(maxRelays)); remove one or raise max_relays")
                }
                relay = Relay(id: RandomSecret.make(bytes: 8), name: relayName, credentialHash: Self.hash(credential), registeredAt: now)
                s.relays.append(relay)
            }
            s.issued[i].usedAt = now
            try persist(&s)
            return .registered(relay, credential: credential)
        }
    }

    /// The relay a recovery credentials file re-attaches, when the file is valid (issued here, unused, not
    /// expired, for a recovery); the file is not spent. Lets `relay rebuild` check its passphrase against the
    /// container's key file before it registers, since registering replaces the relay's credential.
    public func recoveryTarget(secret: String, now: Date = Date()) throws -> Result<Relay, RecoveryRefusal> {
        try state.withLock { s in
            try refresh(&s)
            guard let issued = s.issued.first(where: { $0.secretHash == Self.hash(secret) }), issued.usedAt == nil, issued.expiresAt >= now else {
                return .failure(
                    RecoveryRefusal(
                        message:
                            "this recovery credentials file is not valid here (not issued by this vault, already used or expired); make a new one with `outpost vault credentials --recover RELAY`"
                    ))
            }
            guard let id = issued.recoverRelay, let relay = s.relays.first(where: { $0.id == id }) else {
                return .failure(RecoveryRefusal(message: "this vault credentials file registers a new relay; it does not re-attach one"))
            }
            return .success(relay)
        }
    }

    public struct RecoveryRefusal: Error, Sendable { public let message: String }

    public func authenticate(relayID: String, secret: String) -> Relay? {
        state.withLock { s in
            try? refresh(&s)
            guard let r = s.relays.first(where: { $0.id == relayID && $0.removedAt == nil }) else { return nil }
            let given = Array(Self.hash(secret).utf8), stored = Array(r.credentialHash.utf8)
            guard given.count == stored.count else { return nil }
            var diff: UInt8 = 0
            for (a, b) in zip(given, stored) { diff |= a ^ b }
            return diff == 0 ? r : nil
        }
    }

    public func remove(_ idOrName: String, now: Date = Date()) throws -> Relay {
        try withFileLock { try removeLocked(idOrName, now: now) }
    }

    private func removeLocked(_ idOrName: String, now: Date) throws -> Relay {
        try state.withLock { s in
            try refresh(&s)
            let i = try Self.resolve(idOrName, in: s.relays, activeOnly: true)
            s.relays[i].removedAt = now
            s.relays[i].credentialHash = ""
            try persist(&s)
            return s.relays[i]
        }
    }

    public var relays: [Relay] { state.withLock { $0.relays } }
}
