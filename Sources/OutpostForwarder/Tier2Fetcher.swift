import Foundation
import Logging
import OutpostCore
import OutpostStore
import Synchronization

/// Tier 2: a blob the relay's store lacks (or holds damaged), served from the vault during a restore.
///
/// The ledger says where the vault holds it; a blob the ledger cannot place (an index rebuilt from the packs
/// forgets it) is looked up in the packs' own indexes, read at most every 10 minutes.
final class Tier2Fetcher: Sendable {
    let reader: VaultReader
    let ledger: ForwardingLedger
    private let catalogCache = Mutex<(at: Date, catalog: [BlobID: [VaultLocation]])?>(nil)

    init(reader: VaultReader, ledger: ForwardingLedger) {
        self.reader = reader
        self.ledger = ledger
    }

    /// The blob, unsealed, decompressed and checked against its id; nil when the vault never acknowledged it.
    func fetch(_ id: BlobID) async throws -> PreparedBlob? {
        guard let placed = try ledger.location(of: id) else {
            for loc in try await cachedCatalog()[id] ?? [] {
                do {
                    if let blob = try await reader.blob(id, at: loc) { return blob }
                } catch let e as ForwarderError where e.code == .tampered {
                    reader.logger.warning(
                        "damaged vault copy passed over", metadata: ["blob": "\(id.shortHex)", "pack": "\(loc.pack)", "error": "\(e.message)"])
                }
            }
            return try await reader.legacyBlob(id)
        }
        guard let loc = placed.location else { return try await reader.legacyBlob(id) }
        return try await reader.blob(id, at: loc)
    }

    private func cachedCatalog() async throws -> [BlobID: [VaultLocation]] {
        if let c = catalogCache.withLock({ $0 }), Date().timeIntervalSince(c.at) < 600 { return c.catalog }
        let fresh = try await reader.catalog()
        catalogCache.withLock { $0 = (Date(), fresh) }
        return fresh
    }
}
