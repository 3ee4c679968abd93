import Foundation
import OutpostCore
import OutpostStore

extension Forwarder {
    /// `relay check --repair`: mends the relay's store from the vault (`StoreRepairer`), each blob fetched as tier 2
    /// fetches it (the ledger's place, else the packs' own indexes, else a version 1 object). A vault copy that is
    /// damaged leaves that blob unrepaired, named; a vault that cannot be reached ends the repair (what was
    /// committed before stays).
    public func repairStore(_ found: CheckReport) async throws -> (repair: StoreRepairReport, after: CheckReport) {
        try await StoreRepairer(store: store, logger: logger) { [self] id in
            do {
                return try await fetch(id)
            } catch let e as ForwarderError where e.code == .tampered || e.code == .corrupt || e.code == .malformed {
                throw StoreRepairer.Unavailable("the vault's copy is damaged too (\(e.message))")
            } catch let e as FormatError {
                throw StoreRepairer.Unavailable("the vault's copy is damaged too (\(e.message))")
            }
        }.run(found)
    }
}
