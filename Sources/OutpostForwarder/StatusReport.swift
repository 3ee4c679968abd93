import Foundation
import Logging
import OutpostCore
import OutpostHTTP

/// The forwarder's part of the relay's status record (issue 13; docs/vault.md §20): what waits to be forwarded,
/// and for how long.
extension Forwarder {
    /// Points not yet forwarded (nor expired), the stored bytes the vault has not acknowledged, and the seconds
    /// since the oldest waiting point finished (0 when none waits).
    public func backlog(now: Date) throws -> (RelayStatusRecord.Backlog, lagSeconds: Int64) {
        let waiting = try ledger.entries().filter { $0.state != .forwarded && $0.state != .expired }
        let lag = waiting.map(\.finishedAt).min().map { max(0, Int64(now.timeIntervalSince($0))) } ?? 0
        return (RelayStatusRecord.Backlog(points: waiting.count, bytes: waiting.isEmpty ? 0 : try ledger.unsentBytes()), lag)
    }

    /// Builds the record with `make` (given the backlog and lag) and sends it. Never throws: the fleet view is
    /// best effort, and forwarding must not fail for it; a failure is logged. Returns whether the vault took it.
    @discardableResult
    public func sendStatus(_ make: @Sendable (RelayStatusRecord.Backlog, Int64) throws -> RelayStatusRecord) async -> Bool {
        do {
            let (backlog, lag) = try backlog(now: Date())
            let record = try make(backlog, lag)
            if try await vault.sendStatus(record) { return true }
            logger.debug("the vault has no fleet view (it predates POST /v1/status); no status record sent")
        } catch {
            logger.warning("the status record for the vault's fleet view was not sent; tried again later", metadata: ["error": "\(error)"])
        }
        return false
    }
}
