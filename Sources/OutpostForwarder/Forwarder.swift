import Foundation
import Logging
import OutpostCore
import OutpostCrypto
import OutpostHTTP
import OutpostStore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The relay's MARS-style agent: sends every recovery point off-site, encrypted.
///
/// For each recovery point not yet forwarded: every blob it needs that the vault has not acknowledged is
/// sealed (AES-256-GCM over the blob as stored, compressed) into vault packs under keyed names and put
/// (put-if-absent, so a retry after an interruption never duplicates), then the point's sealed entry. The ledger
/// records each acknowledged pack's blobs as it goes: an interrupted run resumes without re-uploading what the
/// vault acknowledged.
///
/// The facade over the forwarder's parts: `PointForwarder` (forward), `VaultVerifier` (verify and repair),
/// `Tier2Fetcher` (a blob back for a restore), `VaultReader` (reading the vault back), `VaultPack` (the format).
public final class Forwarder: Sendable {
    public let store: Store
    let data: String
    public let vault: VaultClient
    public let sealer: ObjectSealer
    let ledger: ForwardingLedger
    let throttle: Throttle?
    let logger: Logger
    let concurrency: Int
    public let sentBytes = Atomic<Int64>(0)
    let decompressors = ResourcePool { ZstdDecompressor() }
    let reader: VaultReader
    private let tier2: Tier2Fetcher
    /// The container's verifier (`Registration.putVerifier`), put by the first forwarding run of the process:
    /// relays registered before verifiers existed get theirs.
    let verifier: String
    let verifierPut = Atomic<Bool>(false)

    public init(store: Store, data: String, vault: VaultClient, master: MasterKey, throttle: Throttle?, concurrency: Int = 4, logger: Logger) {
        self.store = store
        self.data = data
        self.vault = vault
        self.sealer = ObjectSealer(master: master)
        self.verifier = MasterKey.verifierHash(ofProof: master.containerProof())
        self.ledger = ForwardingLedger(store: store)
        self.throttle = throttle
        self.concurrency = max(1, concurrency)
        self.logger = logger
        self.reader = VaultReader(vault: vault, sealer: sealer, logger: logger)
        self.tier2 = Tier2Fetcher(reader: reader, ledger: ledger)
    }

    public struct Report: Sendable { public var points = 0; public var blobs = 0; public var bytes: Int64 = 0; public var backlog = 0 }

    /// MARS's rule: the staging area must have free space of at least 5 % of the data the relay protects.
    public func checkStaging() throws {
        var fs = statvfs()
        guard statvfs(data, &fs) == 0 else { return }
        try Self.checkStaging(free: Int64(fs.f_bavail) * Int64(fs.f_frsize), protected: Int64(try store.index.totals().rawBytes), at: data)
    }

    public static func checkStaging(free: Int64, protected: Int64, at data: String) throws {
        let needed = protected / 20
        if free < needed {
            throw ForwarderError(
                .staging,
                "the forwarder's staging area \(data) has \(free / 1_048_576) MiB free; it needs at least 5 % of the \(protected / 1_048_576) MiB the relay protects (\(needed / 1_048_576) MiB): free space there before forwarding"
            )
        }
    }

    /// Stored bytes gathered into one vault pack before it is sealed and sent (docs/vault.md §9.3).
    public static let packTarget = 8 << 20
    static let maxBlobsPerPack = 4096

    /// Forwards every recovery point not yet forwarded. `salt` enters pack names (a repair uses a fresh one).
    public func run(salt: String = "") async throws -> Report {
        // A job when there was something to forward, or it failed (relay jobs), recorded once it ended: a run finds
        // nothing to do after most commits, and must not cost the index a write then.
        let started = Date()
        do {
            let r = try await PointForwarder(forwarder: self, salt: salt).run()
            if r.points > 0 || r.backlog > 0 {
                try? JobLog(store: store).record(
                    .forward, machine: nil, state: .completed, startedAt: started, endedAt: Date(), bytes: r.bytes, files: r.blobs,
                    detail: "\(r.points) recovery points forwarded, \(r.blobs) blobs; backlog \(r.backlog)")
            }
            return r
        } catch {
            try? JobLog(store: store).record(
                .forward, machine: nil, state: .failed, startedAt: started, endedAt: Date(), bytes: 0, files: 0, detail: "\(error)")
            throw error
        }
    }

    /// Reads back everything the vault acknowledged and checks it: present, authentic, and hashing to its id.
    /// Packs are read whole, one request each.
    public func verify() async throws -> Verification {
        try await VaultVerifier(forwarder: self).verify()
    }

    /// Sends again, into new packs, every damaged or missing blob the relay still holds intact, and puts back
    /// damaged point entries.
    public func repair(_ found: Verification) async throws -> Repair {
        try await VaultVerifier(forwarder: self).repair(found)
    }

    /// A blob back from the vault (tier 2): read where the ledger says it is, unsealed, decompressed and checked
    /// against its id. nil when the vault never acknowledged it.
    public func fetch(_ id: BlobID) async throws -> PreparedBlob? {
        try await tier2.fetch(id)
    }

    /// The blob at `loc` in the vault, opened and checked; nil when the vault no longer has the pack.
    public static func fetch(_ id: BlobID, at loc: VaultLocation, vault: VaultClient, sealer: ObjectSealer) async throws -> PreparedBlob? {
        try await VaultReader.blob(id, at: loc, vault: vault, sealer: sealer)
    }

    /// Where the vault holds each blob, read from the indexes of every pack in the container (a rebuilt relay
    /// has no ledger). A blob can be in several packs (a repair sent it again): every copy is listed.
    public func vaultCatalog() async throws -> [BlobID: [VaultLocation]] {
        try await reader.catalog()
    }

    /// The recovery point ids the vault holds (from the `p/` entries).
    public func vaultPoints() async throws -> [BlobID] {
        try await reader.points()
    }
}
