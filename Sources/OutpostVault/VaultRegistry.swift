import Crypto
import Foundation
import OutpostCore
import OutpostHTTP
import OutpostObjects
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The relays registered with a vault and the credentials files issued for it. On filesystem storage they are
/// kept in registry.json; on S3 storage, as a log of events in the vault's bucket (`RegistryLog`), so that
/// every `vault serve` over that bucket serves the same relays (docs/vault.md §2.2, §2.5). Both apply the same
/// events, decided from the same state. Secrets are stored as SHA-256 hashes only.
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

    struct State: Codable, Sendable, Equatable {
        var relays: [Relay] = []
        var issued: [Issued] = []
        /// S3 only: the policy `vault set` recorded last (nil: none yet; each node applies its vault.json's).
        var policy: VaultPolicy?
    }

    enum Backend: Sendable {
        case file(RegistryFile)
        case log(RegistryLog)
    }

    let backend: Backend

    /// The registry of a filesystem vault: registry.json at `path`.
    public init(path: String) throws {
        backend = .file(try RegistryFile(path: path))
    }

    /// The registry of an S3 vault: the event log under `meta/registry/` in `objects`. Nothing is read until it
    /// is needed. `legacyFile`: a registry.json from before the log, imported as its first event when the log
    /// is empty. `maxAge`: how long a node trusts its copy when it authenticates a relay it knows.
    public init(objects: any ObjectStore, legacyFile: String? = nil, maxAge: Duration = RegistryLog.defaultMaxAge) {
        backend = .log(RegistryLog(objects: objects, legacyFile: legacyFile, maxAge: maxAge))
    }

    static func hash(_ s: String) -> String { Hex.encode(Array(SHA256.hash(data: Array(s.utf8)))) }

    /// Decides a change on the newest state and records the event it returns (nil: nothing to record). On the
    /// log, a node that lost the race for the next event number decides again on the state that includes the
    /// winner's event, so a one-time transition never succeeds twice.
    private func change<T>(_ decide: (State) throws -> (T, RegistryEvent?)) throws -> T {
        switch backend {
        case .file(let f): try f.change(decide)
        case .log(let l): try l.change(decide)
        }
    }

    private func current() throws -> State {
        switch backend {
        case .file(let f): try f.current()
        case .log(let l): try l.refreshed().state
        }
    }

    public func issue(secret: String, expiresAt: Date, recoverRelay: String? = nil, now: Date = Date()) throws {
        try change { s in
            let id = try recoverRelay.map { s.relays[try Self.resolve($0, in: s.relays, activeOnly: false)].id }
            let issued = Issued(secretHash: Self.hash(secret), expiresAt: expiresAt, recoverRelay: id)
            return ((), RegistryEvent(.issue, at: now) { $0.issued = issued })
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
        try change { s in
            let secretHash = Self.hash(secret)
            guard let issued = s.issued.first(where: { $0.secretHash == secretHash }) else {
                return (
                    .refused(
                        "this vault credentials file was not issued by this vault (or belongs to another vault); download a new one with `outpost vault credentials`"
                    ), nil
                )
            }
            if issued.usedAt != nil {
                return (.refused("this vault credentials file was already used; download a new one with `outpost vault credentials`"), nil)
            }
            if issued.expiresAt < now {
                return (
                    .refused(
                        "this vault credentials file expired on \(issued.expiresAt.formatted(.iso8601)); download a new one with `outpost vault credentials`"
                    ), nil
                )
            }
            let credential = RandomSecret.make()
            let event: RegistryEvent
            if let recover = issued.recoverRelay, s.relays.contains(where: { $0.id == recover }) {
                event = RegistryEvent(.takeover, at: now) {
                    $0.secretHash = secretHash
                    $0.relayID = recover
                    $0.credentialHash = Self.hash(credential)
                    $0.takeover = Takeover(at: now, relayName: relayName, proven: proven)
                }
            } else {
                if let problem = RelayName.problem(relayName) { return (.invalidName(problem + "; register with another --name"), nil) }
                if let other = s.relays.first(where: { $0.removedAt == nil && $0.name == relayName }) {
                    return (
                        .nameTaken(
                            "a relay named \(RelayName.quoted(relayName)) is already registered with this vault (id \(other.id)): register under another --name, or rebuild that relay with `outpost vault credentials --recover \(other.id)`, or remove it first with `outpost vault remove-relay \(other.id)`"
                        ), nil
                    )
                }
                if let other = s.relays.first(where: { $0.id == relayName }) {
                    return (
                        .nameTaken(
                            "\(RelayName.quoted(relayName)) is the id of another relay of this vault (named \(RelayName.quoted(other.name))): register under another --name"
                        ), nil
                    )
                }
                let active = s.relays.filter { $0.removedAt == nil }.count
                // On S3 the limit `vault set` recorded in the log, which every node applies alike.
                let maxRelays = s.policy?.maxRelays ?? maxRelays
                if active >= maxRelays {
                    return (.refused("this vault already serves \(active) relays, its limit (\(maxRelays)); remove one or raise max_relays"), nil)
                }
                let relay = Relay(id: RandomSecret.make(bytes: 8), name: relayName, credentialHash: Self.hash(credential), registeredAt: now)
                event = RegistryEvent(.register, at: now) {
                    $0.secretHash = secretHash
                    $0.relay = relay
                }
            }
            var after = s
            try after.apply(event)
            guard let relay = after.relays.first(where: { $0.id == (event.relay?.id ?? event.relayID) }) else {
                throw VaultError(.invalid, "the registration event names no relay")
            }
            return (.registered(relay, credential: credential), event)
        }
    }

    /// The relay a recovery credentials file re-attaches, when the file is valid (issued here, unused, not
    /// expired, for a recovery); the file is not spent. Lets `relay rebuild` check its passphrase against the
    /// container's key file before it registers, since registering replaces the relay's credential.
    public func recoveryTarget(secret: String, now: Date = Date()) throws -> Result<Relay, RecoveryRefusal> {
        let s = try current()
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

    public struct RecoveryRefusal: Error, Sendable { public let message: String }

    /// The active relay the credential belongs to, or nil. On the log, a node answers from its copy when that
    /// copy is younger than `maxAge` and knows the credential; otherwise it reads the events it has not seen
    /// first, so a relay registered through another node is known at once. Throws only when the storage cannot
    /// be read and the copy does not know the credential (the relay gets 500, not 401).
    public func authenticate(relayID: String, secret: String) throws -> Relay? {
        let given = Array(Self.hash(secret).utf8)
        func match(_ s: State) -> Relay? {
            guard let r = s.relays.first(where: { $0.id == relayID && $0.removedAt == nil }) else { return nil }
            let stored = Array(r.credentialHash.utf8)
            guard given.count == stored.count else { return nil }
            var diff: UInt8 = 0
            for (a, b) in zip(given, stored) { diff |= a ^ b }
            return diff == 0 ? r : nil
        }
        switch backend {
        case .file(let f):
            return match(f.currentOrCached())
        case .log(let l):
            if let fresh = l.cachedIfFresh(), let r = match(fresh) { return r }
            return match(try l.refreshed().state)
        }
    }

    public func remove(_ idOrName: String, now: Date = Date()) throws -> Relay {
        try change { s in
            let i = try Self.resolve(idOrName, in: s.relays, activeOnly: true)
            var relay = s.relays[i]
            relay.removedAt = now
            relay.credentialHash = ""
            return (relay, RegistryEvent(.remove, at: now) { $0.relayID = relay.id })
        }
    }

    /// Every relay ever registered, removed ones too, as the storage holds them now (`vault relays`).
    public func allRelays() throws -> [Relay] { try current().relays }

    /// Every relay ever registered, removed ones too. On the log: the node's copy, read again when older than
    /// `maxAge` (kept as it is when the storage cannot be read).
    public var relays: [Relay] {
        switch backend {
        case .file(let f): f.cached().relays
        case .log(let l): l.cachedIfFresh()?.relays ?? ((try? l.refreshed().state) ?? l.cached()).relays
        }
    }
}

/// One change to the registry: an object `meta/registry/NNNNNNNNNN.json` of the log on S3 storage (docs/vault.md
/// §2.5), and what the filesystem registry applies to registry.json.
struct RegistryEvent: Codable, Sendable, Equatable {
    enum Kind: String, Codable, Sendable {
        /// A credentials file was written (`issued`).
        case issue
        /// A credentials file made a new relay, and its container (`secretHash` spent, `relay` added).
        case register
        /// A recovery file handed a relay's container to a rebuilt relay (`secretHash` spent; `relayID` gets
        /// `credentialHash`, its `removedAt` cleared and `takeover` appended).
        case takeover
        /// `vault remove-relay` (`relayID`).
        case remove
        /// The registry.json of an S3 vault from before the log (`state`); only ever the first event.
        case `import`
        /// `vault set` on an S3 vault: the policy every node applies from now on (`policy`).
        case policy
    }

    var format = "outpost-vault-registry-event"
    var version = 1
    /// Random: no two events have the same bytes, which a retried conditional PUT relies on (a lost answer
    /// counts as written when the stored object's MD5 is the sent bytes', docs/vault.md §2.4).
    var id = RandomSecret.make(bytes: 8)
    var kind: Kind
    var at: Date
    var issued: VaultRegistry.Issued?
    var secretHash: String?
    var relay: VaultRegistry.Relay?
    var relayID: String?
    var credentialHash: String?
    var takeover: VaultRegistry.Takeover?
    var state: VaultRegistry.State?
    var policy: VaultPolicy?

    init(_ kind: Kind, at: Date, _ fill: (inout RegistryEvent) -> Void = { _ in }) {
        self.kind = kind
        self.at = at
        fill(&self)
    }
}

extension VaultRegistry.State {
    /// The state after `e`. The same on every node: an event carries everything it changes.
    mutating func apply(_ e: RegistryEvent) throws {
        func bad() -> VaultError {
            VaultError(.notAVault, "a \(e.kind.rawValue) event of the vault registry (id \(e.id)) lacks its fields: it is damaged")
        }
        func spend(_ hash: String?) {
            if let i = issued.firstIndex(where: { $0.secretHash == hash && $0.usedAt == nil }) { issued[i].usedAt = e.at }
        }
        switch e.kind {
        case .issue:
            guard let i = e.issued else { throw bad() }
            issued.append(i)
        case .register:
            guard let r = e.relay, e.secretHash != nil else { throw bad() }
            relays.append(r)
            spend(e.secretHash)
        case .takeover:
            guard let id = e.relayID, let hash = e.credentialHash, let t = e.takeover, e.secretHash != nil else { throw bad() }
            if let j = relays.firstIndex(where: { $0.id == id }) {
                relays[j].credentialHash = hash
                relays[j].removedAt = nil
                relays[j].takeovers = (relays[j].takeovers ?? []) + [t]
            }
            spend(e.secretHash)
        case .remove:
            guard let id = e.relayID else { throw bad() }
            if let j = relays.firstIndex(where: { $0.id == id }) {
                relays[j].removedAt = e.at
                relays[j].credentialHash = ""
            }
        case .import:
            guard let s = e.state else { throw bad() }
            self = s
        case .policy:
            guard let p = e.policy else { throw bad() }
            policy = p
        }
    }
}

/// registry.json: read again when another process (the `vault credentials` command) changed it, written whole
/// under `flock` on registry.json.lock.
final class RegistryFile: Sendable {
    struct Loaded {
        var state: VaultRegistry.State
        /// mtime (and inode) of registry.json when it was read.
        var stamp: Double?
    }

    let path: String
    private let loaded: Mutex<Loaded>

    init(path: String) throws {
        self.path = path
        loaded = Mutex(try Self.read(path))
    }

    static func stamp(_ path: String) -> Double? {
        guard let a = try? FileManager.default.attributesOfItem(atPath: path), let m = a[.modificationDate] as? Date else { return nil }
        return m.timeIntervalSince1970 + Double((a[.systemFileNumber] as? Int) ?? 0)
    }

    static func read(_ path: String) throws -> Loaded {
        guard let data = FileManager.default.contents(atPath: path) else { return Loaded(state: .init(), stamp: nil) }
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        do { return Loaded(state: try d.decode(VaultRegistry.State.self, from: data), stamp: stamp(path)) } catch {
            throw VaultError(.notAVault, "the vault registry \(path) is damaged: \(error)")
        }
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

    private func refresh(_ l: inout Loaded) throws {
        if Self.stamp(path) != l.stamp { l = try Self.read(path) }
    }

    func change<T>(_ decide: (VaultRegistry.State) throws -> (T, RegistryEvent?)) throws -> T {
        try withFileLock {
            try loaded.withLock { l in
                try refresh(&l)
                let (result, event) = try decide(l.state)
                guard let event else { return result }
                var next = l.state
                try next.apply(event)
                let e = JSONEncoder()
                e.outputFormatting = [.prettyPrinted, .sortedKeys]
                e.dateEncodingStrategy = .iso8601
                try writeAtomically(Array(try e.encode(next)), to: path)
                l = Loaded(state: next, stamp: Self.stamp(path))
                return result
            }
        }
    }

    func current() throws -> VaultRegistry.State {
        try loaded.withLock { l in
            try refresh(&l)
            return l.state
        }
    }

    /// The file's state, or the last one read when it cannot be read now.
    func currentOrCached() -> VaultRegistry.State {
        loaded.withLock { l in
            try? refresh(&l)
            return l.state
        }
    }

    func cached() -> VaultRegistry.State { loaded.withLock { $0.state } }
}
