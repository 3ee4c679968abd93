import Foundation
import Logging
import OutpostCore
import OutpostStore
import ServiceLifecycle

/// Prunes the relay tier inside `relay serve` once a day, at relay.toml's `prune_time` (local time), and logs
/// what it did, then runs the online gc (beside the pushes, with its default grace) and logs what it freed. The
/// clock and the wait are injected, so that tests run a day in no time. A failed prune or gc is logged and tried
/// again the next day; backups go on meanwhile.
public final class PruneService: Service, Sendable {
    /// Minutes after midnight.
    let minute: Int
    let timeZone: TimeZone
    let clock: @Sendable () -> Date
    let wait: @Sendable (Double) async throws -> Void
    /// Plans and applies a prune at the given time; returns the applied plan.
    let prune: @Sendable (Date) async throws -> PrunePlan
    /// The gc after each prune (nil: none). Synchronous and long: it runs on a dispatch queue, not on the
    /// cooperative pool the relay's requests need.
    let gc: (@Sendable () throws -> GCReport)?
    let logger: Logger

    public init(
        at minute: Int, timeZone: TimeZone = .current, clock: @escaping @Sendable () -> Date = { Date() },
        wait: @escaping @Sendable (Double) async throws -> Void = { try await Task.sleep(for: .seconds($0)) },
        logger: Logger, gc: (@Sendable () throws -> GCReport)? = nil, prune: @escaping @Sendable (Date) async throws -> PrunePlan
    ) {
        self.minute = minute
        self.timeZone = timeZone
        self.clock = clock
        self.wait = wait
        self.prune = prune
        self.gc = gc
        self.logger = logger
    }

    /// Ends quietly at shutdown: the wait is cancelled then, and a cancelled wait is not a failure of the relay.
    public func run() async throws {
        do { try await cancelWhenGracefulShutdown { try await self.loop() } } catch is CancellationError {}
    }

    /// Waits for the next prune time and prunes, `days` times (for ever by default).
    package func loop(days: Int = .max) async throws {
        for _ in 0..<days {
            try await wait(Self.seconds(until: minute, after: clock(), in: timeZone))
            try Task.checkCancellation()
            _ = await pruneOnce()
            _ = await collectGarbage()
        }
    }

    /// One prune, logged; nil when it failed.
    package func pruneOnce() async -> PrunePlan? {
        do {
            let plan = try await prune(clock())
            logger.info(
                "pruned the relay tier",
                metadata: [
                    "removed": "\(plan.count(relay: "leaves"))", "kept": "\(plan.count(relay: "stays"))",
                    "waiting_for_forwarding": "\(plan.waitingForForwarding)",
                    "vault_expiring": "\(plan.count(vault: "expires"))", "vault_tier": "\(plan.vaultTier)",
                    "vault": "\(plan.vaultRegistered ? "registered" : "none: relay rules alone")",
                ])
            if plan.count(relay: "leaves") > 0 {
                logger.info(
                    "the data of the points pruned now is freed by a gc at least 24 h later (the next days' runs, or `outpost relay gc`): gc keeps what pushes relied on within its grace"
                )
            }
            return plan
        } catch {
            logger.warning("pruning the relay tier failed; tried again at the next prune time", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// One gc after the prune (also after a failed prune: it frees what earlier prunes left), logged; nil when
    /// there is none or it failed.
    package func collectGarbage() async -> GCReport? {
        guard let gc else { return nil }
        let result: Result<GCReport, any Error> = await withCheckedContinuation { done in
            DispatchQueue.global(qos: .utility).async { done.resume(returning: Result { try gc() }) }
        }
        switch result {
        case .success(let r):
            logger.info(
                "collected garbage in the relay's store",
                metadata: [
                    "freed": "\(r.bytesFreed) bytes", "unused_blobs": "\(r.deadBlobs)", "packs_deleted": "\(r.packsDeleted)",
                    "packs_rewritten": "\(r.packsRepacked)", "packs_left_in_grace": "\(r.packsInGrace)",
                    "forgotten_points_kept_in_grace": "\(r.forgottenPointsKept)",
                ])
            return r
        case .failure(let error):
            logger.warning(
                "gc after the prune failed; tried again after the next prune, or run `outpost relay gc`", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Seconds from `now` to the next `minute` after midnight in `timeZone` (tomorrow's when today's has passed).
    public static func seconds(until minute: Int, after now: Date, in timeZone: TimeZone) -> Double {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let next = calendar.nextDate(
            after: now, matching: DateComponents(hour: minute / 60, minute: minute % 60, second: 0), matchingPolicy: .nextTime)
        return max(1, next.map { $0.timeIntervalSince(now) } ?? 86400)
    }
}
