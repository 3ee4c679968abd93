import Foundation
import OutpostCore

/// The vault's rules that every node must apply alike: immutability and its lock, the soft-delete period and the
/// relay limit (docs/vault.md §2.5). A filesystem vault keeps them in vault.json. On S3 several nodes serve one
/// bucket, each with its own copy of vault.json, so `vault set` appends them to the registry log and every node
/// applies the newest there; a node whose log has none yet applies its vault.json's (a vault from before this).
/// Otherwise one node could still delete what another had made immutable.
public struct VaultPolicy: Codable, Sendable, Equatable {
    public var immutable: Bool
    /// Once locked, immutability cannot be turned off, on any node.
    public var locked: Bool
    public var softDeleteDays: Int
    public var maxRelays: Int

    public init(_ s: VaultConfiguration) {
        immutable = s.immutable
        locked = s.locked
        softDeleteDays = s.softDeleteDays
        maxRelays = s.maxRelays
    }

    /// A change `vault set` asks for; nil leaves a rule as it is.
    public struct Change: Sendable {
        public var immutable: Bool?
        public var lock = false
        public var softDeleteDays: Int?
        public var maxRelays: Int?
        public init(immutable: Bool? = nil, lock: Bool = false, softDeleteDays: Int? = nil, maxRelays: Int? = nil) {
            self.immutable = immutable; self.lock = lock; self.softDeleteDays = softDeleteDays; self.maxRelays = maxRelays
        }
        public var isEmpty: Bool { immutable == nil && !lock && softDeleteDays == nil && maxRelays == nil }
    }

    /// The policy after `c`: turning immutability off is refused once locked (exit 15).
    public func applying(_ c: Change) throws -> VaultPolicy {
        var p = self
        if c.immutable == false {
            if locked { throw VaultError(.refused, "this vault's immutability is locked and cannot be turned off") }
            p.immutable = false
        }
        if c.immutable == true || c.lock { p.immutable = true }
        if c.lock { p.locked = true }
        if let d = c.softDeleteDays { p.softDeleteDays = d }
        if let m = c.maxRelays { p.maxRelays = m }
        return p
    }

    /// This policy, but immutable and locked when `s` (a node's vault.json) is locked: a lock made there before
    /// the log recorded any policy (or on a node that has not read the log) is never weakened by the log.
    func keepingLock(of s: VaultConfiguration) -> VaultPolicy {
        guard s.locked else { return self }
        var p = self
        p.immutable = true
        p.locked = true
        return p
    }

    /// `s` with this policy's rules (the copy vault.json keeps).
    public func applied(to s: VaultConfiguration) -> VaultConfiguration {
        var s = s
        s.immutable = immutable; s.locked = locked; s.softDeleteDays = softDeleteDays; s.maxRelays = maxRelays
        return s
    }
}

extension VaultRegistry {
    /// The policy in force: the log's newest on S3 (the node's copy, read again when older than `maxAge`; kept as
    /// it is when the storage cannot be read), else `settings`' (vault.json).
    public func policy(default settings: VaultConfiguration) -> VaultPolicy {
        switch backend {
        case .file: VaultPolicy(settings)
        case .log(let l): ((l.cachedIfFresh() ?? (try? l.refreshed().state) ?? l.cached()).policy ?? VaultPolicy(settings)).keepingLock(of: settings)
        }
    }

    /// Whether the policy is shared through the registry (S3) rather than kept in vault.json.
    public var sharesPolicy: Bool {
        if case .log = backend { return true }
        return false
    }

    /// Records `change` in the log (S3 only), decided on the newest policy there, so that a node with an older
    /// vault.json cannot unlock what another node locked. Returns the policy now in force.
    public func setPolicy(_ change: VaultPolicy.Change, default settings: VaultConfiguration, now: Date = Date()) throws -> VaultPolicy {
        guard case .log(let l) = backend else {
            throw VaultError(.invalid, "a filesystem vault keeps its policy in vault.json; `vault set` writes it there")
        }
        return try l.change { s in
            let current = (s.policy ?? VaultPolicy(settings)).keepingLock(of: settings)
            let next = try current.applying(change)
            return (next, next == current && s.policy != nil ? nil : RegistryEvent(.policy, at: now) { $0.policy = next })
        }
    }
}
