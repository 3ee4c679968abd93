import Foundation
import OutpostCore
import OutpostObjects
import Synchronization

/// The registry of an S3 vault (docs/vault.md §2.5): an append-only log of events in the vault's object store,
/// `meta/registry/0000000001.json`, `…2.json`, …, numbered without gaps. The registry is the fold of the log.
/// S3 cannot compare-and-swap an object it overwrites, so nothing is overwritten: a node appends the event it
/// decided as the number after the last one it read, with put-if-absent, and the put that finds the number
/// taken means another node changed the registry first; the node then reads that event and decides again. Every
/// one-time transition (a credentials file spent, a container made, a container taken over) is such an append,
/// so two nodes racing for one can never both succeed.
///
/// Each node keeps the fold in memory with the number of its last event, and reads only what follows it: one
/// GET per new event and one that finds nothing (no listing).
public final class RegistryLog: Sendable {
    public static let prefix = "meta/registry/"
    /// How long a node trusts its copy to authenticate a relay it knows: a removal or a takeover through another
    /// node reaches it within this time (a registration at once, since an unknown credential reads the log).
    public static let defaultMaxAge: Duration = .seconds(5)
    /// Appends lost in a row before a change gives up (each lost one means another node's change went in).
    static let attempts = 64

    struct Cache {
        var state = VaultRegistry.State()
        /// The number of the last event folded into `state` (0: none).
        var seq = 0
        /// When the last read of the log that found its end started.
        var checkedAt: ContinuousClock.Instant?
    }

    let objects: any ObjectStore
    let legacyFile: String?
    let maxAge: Duration
    private let cache = Mutex(Cache())

    init(objects: any ObjectStore, legacyFile: String?, maxAge: Duration) {
        self.objects = objects
        self.legacyFile = legacyFile
        self.maxAge = maxAge
    }

    static func key(_ n: Int) -> String {
        let digits = String(n)
        return prefix + String(repeating: "0", count: max(0, 10 - digits.count)) + digits + ".json"
    }

    static func encode(_ e: RegistryEvent) throws -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        enc.dateEncodingStrategy = .iso8601
        return Array(try enc.encode(e))
    }

    static func decode(_ bytes: [UInt8], key: String) throws -> RegistryEvent {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        struct Head: Decodable { var format: String; var version: Int }
        guard let head = try? d.decode(Head.self, from: Data(bytes)), head.format == "outpost-vault-registry-event" else {
            throw VaultError(.notAVault, "the vault registry event \(key) is damaged (not an outpost-vault-registry-event); restore it from a copy")
        }
        guard head.version <= 1 else {
            throw VaultError(
                .unsupportedVersion, "the vault registry event \(key) has version \(head.version), newer than this outpost reads: upgrade outpost")
        }
        do { return try d.decode(RegistryEvent.self, from: Data(bytes)) } catch {
            throw VaultError(.notAVault, "the vault registry event \(key) is damaged: \(error)")
        }
    }

    /// The copy in memory (possibly stale).
    func cached() -> VaultRegistry.State { cache.withLock { $0.state } }

    /// The copy in memory when the log was read to its end less than `maxAge` ago.
    func cachedIfFresh() -> VaultRegistry.State? {
        cache.withLock { c in
            guard let t = c.checkedAt, ContinuousClock.now - t < maxAge else { return nil }
            return c.state
        }
    }

    /// The registry with every event acknowledged before this call: the events after the copy's last one are
    /// read (outside the lock: requests that trust the copy do not wait for S3), then folded in.
    func refreshed() throws -> (state: VaultRegistry.State, seq: Int) {
        let started = ContinuousClock.now
        var (state, seq) = cache.withLock { ($0.state, $0.seq) }
        var triedImport = false
        while true {
            while let bytes = try objects.get(Self.key(seq + 1)) {
                let key = Self.key(seq + 1)
                try state.apply(try Self.decode(bytes, key: key))
                seq += 1
                copyToSecondary(key, bytes)
            }
            guard seq == 0, !triedImport, let legacy = legacyFile, let imported = try Self.legacy(legacy) else { break }
            // An S3 vault from before the log: its registry.json becomes the first event, once, by whichever node
            // gets there first; then the log is read again from that event.
            triedImport = true
            if try append(RegistryEvent(.import, at: Date()) { $0.state = imported }, at: 1) {
                try? FileManager.default.moveItem(atPath: legacy, toPath: legacy + ".imported")
            }
        }
        return cache.withLock { c in
            if seq > c.seq { (c.state, c.seq) = (state, seq) }
            if c.checkedAt.map({ $0 < started }) ?? true { c.checkedAt = started }
            return (c.state, c.seq)
        }
    }

    /// A registry.json with something in it, or nil.
    static func legacy(_ path: String) throws -> VaultRegistry.State? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let s = try RegistryFile.read(path).state
        return s.relays.isEmpty && s.issued.isEmpty ? nil : s
    }

    func change<T>(_ decide: (VaultRegistry.State) throws -> (T, RegistryEvent?)) throws -> T {
        for _ in 0..<Self.attempts {
            let (state, seq) = try refreshed()
            let (result, event) = try decide(state)
            guard let event else { return result }
            if try append(event, at: seq + 1) {
                try cache.withLock { c in
                    // Another thread of this node may have read the event already.
                    if c.seq == seq {
                        try c.state.apply(event)
                        c.seq = seq + 1
                    }
                }
                return result
            }
        }
        throw VaultError(
            .locked, "the vault registry changed \(Self.attempts) times while this change was decided (other vault nodes are busy with it); try again"
        )
    }

    /// Puts event `n` if no one has. With GRS the primary copy set decides: the secondary gets the event only
    /// after the primary took it, so it never holds a loser's event under a number; a secondary that missed it
    /// gets it when a node next reads it (`copyToSecondary`).
    private func append(_ event: RegistryEvent, at n: Int) throws -> Bool {
        let bytes = try Self.encode(event)
        guard let replicated = objects as? ReplicatedObjectStore else { return try objects.putIfAbsent(Self.key(n), bytes) }
        guard try replicated.primary.putIfAbsent(Self.key(n), bytes) else { return false }
        copyToSecondary(Self.key(n), bytes)
        return true
    }

    private func copyToSecondary(_ key: String, _ bytes: [UInt8]) {
        guard let replicated = objects as? ReplicatedObjectStore else { return }
        try? replicated.replicate(key, bytes)
    }
}
