import Foundation
import Logging
import OutpostCore
import OutpostHTTP
import OutpostStore
import Synchronization

/// The relay's store and its vault seen by the restorer on the relay host (`outpost relay restore`): any
/// machine's blobs, each verified against its id before use, read from the tier asked for. `auto` reads what the
/// store holds intact and fetches from the vault what it lacks, cannot read or holds damaged (a point pruned from
/// the relay whose chunks, and trees, gc removed); `relay` never asks the vault; `vault` reads every blob from it.
/// Counts the stored bytes each tier served, for the restore's summary. It reads only: a restore writes nothing
/// into the store.
public final class RelayHostRepository: BlobRepository {
    public let store: Store
    public let tier: RelayAPI.FetchTier
    /// A blob from the vault (`Forwarder.fetch`: unsealed, checked), nil when the vault does not hold it; nil
    /// when the relay is registered with no vault.
    let vault: (@Sendable (BlobID) async throws -> PreparedBlob?)?
    let logger: Logger
    /// Stored bytes served by each tier.
    public let relayBytes = Atomic<Int64>(0)
    public let vaultBytes = Atomic<Int64>(0)
    private let decompressors = ResourcePool { ZstdDecompressor() }
    /// Vault fetches of one `loadMany` in flight at once (each is a round trip to the vault).
    static let vaultConcurrency = 4

    public init(
        store: Store, tier: RelayAPI.FetchTier, vault: (@Sendable (BlobID) async throws -> PreparedBlob?)?,
        logger: Logger = Logger(label: "outpost.relay-restore")
    ) throws {
        if tier == .vault && vault == nil {
            throw OutpostError(
                .notRegistered, "--tier vault reads from the vault, and this relay is not registered with one; restore with --tier auto or relay")
        }
        self.store = store
        self.tier = tier
        self.vault = tier == .relay ? nil : vault
        self.logger = logger
    }

    public var chunkerParameters: ChunkerParameters { store.config.chunker }
    public var compressionLevel: Int32 { store.config.compressionLevel }

    public func missing(_ ids: [BlobID]) async throws -> Set<BlobID> { try store.missing(ids) }

    public func save(_ blobs: [PreparedBlob]) async throws -> SaveStats { throw Self.readOnly("store blobs") }

    public func commit(_ point: RecoveryPoint) async throws -> RecoveryPointInfo { throw Self.readOnly("commit recovery points") }

    private static func readOnly(_ what: String) -> OutpostError {
        OutpostError(.refused, "a restore on the relay host reads the relay's store and vault; it does not \(what)")
    }

    public func latestPoint(machine: String) async throws -> RecoveryPointInfo? {
        try store.index.points(machine: machine).max { $0.point.finishedAt < $1.point.finishedAt }
    }

    public func load(_ id: BlobID, kind: BlobKind) async throws -> [UInt8] { try await loadMany([id])[0] }

    /// Plaintexts in order: from the store in one index read (unless `vault`), then what is left from the vault.
    public func loadMany(_ ids: [BlobID]) async throws -> [[UInt8]] {
        var out = [[UInt8]?](repeating: nil, count: ids.count)
        var problems: [BlobID: any Error] = [:]
        if tier != .vault {
            let locations = try store.index.locations(of: ids)
            for (i, id) in ids.enumerated() {
                guard let loc = locations[id] else { continue }
                do {
                    out[i] = try store.load(id, at: loc)
                    relayBytes.add(Int64(loc.storedLength), ordering: .relaxed)
                } catch {
                    // Damaged or unreadable on the relay: the vault's copy, where there is one.
                    guard vault != nil else { throw error }
                    logger.warning("blob unreadable on the relay, trying the vault", metadata: ["blob": "\(id.shortHex)", "error": "\(error)"])
                    problems[id] = error
                }
            }
        }
        let rest = ids.indices.filter { out[$0] == nil }
        if rest.isEmpty { return out.map { $0! } }
        guard let vault else {
            let id = ids[rest[0]]
            throw StoreError(
                .notFound,
                tier == .relay
                    ? "blob \(id.shortHex) is not in the relay's store, and --tier relay does not ask the vault; restore with --tier auto to fetch it from there"
                    : "blob \(id.shortHex) is not in the relay's store, and the relay is registered with no vault; run `outpost relay check` to see what is affected"
            )
        }
        // Each distinct blob once, a few at a time.
        var wanted: [BlobID] = []
        var seen = Set<BlobID>()
        for i in rest where seen.insert(ids[i]).inserted { wanted.append(ids[i]) }
        var fetched: [BlobID: [UInt8]] = [:]
        try await withThrowingTaskGroup(of: (BlobID, [UInt8]).self) { group in
            for (n, id) in wanted.enumerated() {
                if n >= Self.vaultConcurrency, let done = try await group.next() { fetched[done.0] = done.1 }
                let problem = problems[id]
                group.addTask { try await self.fromVault(id, vault: vault, problem: problem) }
            }
            while let done = try await group.next() { fetched[done.0] = done.1 }
        }
        for i in rest { out[i] = fetched[ids[i]] }
        return out.map { $0! }
    }

    /// One blob from the vault, opened and checked against its id. `problem`: why the store's copy was not used.
    private func fromVault(
        _ id: BlobID, vault: @Sendable (BlobID) async throws -> PreparedBlob?, problem: (any Error)?
    ) async throws -> (BlobID, [UInt8]) {
        guard let b = try await vault(id) else {
            if let problem { throw problem }
            throw StoreError(
                .notFound,
                tier == .vault
                    ? "blob \(id.shortHex) is not in the vault (not forwarded yet, or lost there); restore with --tier auto, and run `outpost relay verify-vault`"
                    : "blob \(id.shortHex) is in neither the relay's store nor the vault; run `outpost relay check` and `outpost relay verify-vault` to see what is affected"
            )
        }
        let plain = try decompressors.with { d in
            try b.stored.withUnsafeBytes {
                try PreparedBlob.open(
                    stored: $0, id: id, compression: b.compression, rawLength: b.rawLength, decompressor: d,
                    what: "blob \(id.shortHex) from the vault")
            }
        }
        vaultBytes.add(Int64(b.stored.count), ordering: .relaxed)
        return (id, plain)
    }
}
