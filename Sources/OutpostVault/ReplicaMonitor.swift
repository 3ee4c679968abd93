import Foundation
import Logging
import OutpostObjects
import Synchronization

/// Watches GRS's secondary copy set (docs/vault.md §3.1). `vault serve` runs it every `interval`: it replays what
/// the secondary missed, keeps the backlog for the metrics and `vault replica`, and says in the log when the
/// secondary falls behind by more than `warnAfter` and when it has caught up (once each, not every round).
public final class ReplicaMonitor: Sendable {
    public static let interval: Duration = .seconds(30)
    /// Azure states a recovery point objective of 15 minutes for its geo-redundant storage: beyond that, an
    /// administrator should hear of it.
    public static let warnAfter: TimeInterval = 15 * 60
    /// How often every object is compared between the copy sets (also once at start).
    public static let reconcileEvery: TimeInterval = 24 * 3600

    public struct Status: Sendable, Equatable {
        public var backlog = ReplicatedObjectStore.Backlog(objects: 0, oldest: nil)
        /// When the last round ended; nil before the first.
        public var checkedAt: Date?
        /// Why the last round could not read the pending entries (the primary failed), nil when it could.
        public var failure: String?
        public var lastReconcile: Date?
        public init() {}
        public func lagSeconds(now: Date) -> Double { backlog.lagSeconds(now: now) }
    }

    public let store: ReplicatedObjectStore
    let logger: Logger
    let now: @Sendable () -> Date
    private let state = Mutex(Status())
    private let warned = Mutex(false)

    public init(store: ReplicatedObjectStore, logger: Logger, now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.logger = logger
        self.now = now
    }

    public var status: Status { state.withLock { $0 } }

    /// One round: reconcile when due, replay the pending entries, record and report the backlog.
    @discardableResult
    public func round() -> Status {
        let started = now()
        if state.withLock({ $0.lastReconcile.map { started.timeIntervalSince($0) >= Self.reconcileEvery } ?? true }) {
            do {
                let copied = try store.reconcile()
                if copied > 0 {
                    logger.warning("the secondary copy set lacked objects the primary holds; copied", metadata: ["objects": "\(copied)"])
                }
                state.withLock { $0.lastReconcile = started }
            } catch {
                logger.error("comparing the copy sets failed; retried at the next round", metadata: ["error": "\(error)"])
            }
        }
        do {
            let backlog = try store.catchUp()
            let end = now()
            let lag = backlog.lagSeconds(now: end)
            let wasWarned = warned.withLock { w in
                defer { w = lag > Self.warnAfter }
                return w
            }
            if lag > Self.warnAfter && !wasWarned {
                logger.warning(
                    "the secondary copy set is behind: it has not taken some writes; check that it is reachable and has space (`outpost vault replica`)",
                    metadata: ["objects": "\(backlog.objects)", "lag_seconds": "\(Int(lag))"])
            } else if wasWarned && backlog.objects == 0 {
                logger.info("the secondary copy set has caught up")
            }
            return state.withLock { s in
                s.backlog = backlog; s.checkedAt = end; s.failure = nil
                return s
            }
        } catch {
            logger.error("reading the secondary's backlog failed; retried at the next round", metadata: ["error": "\(error)"])
            return state.withLock { s in
                s.failure = "\(error)"; s.checkedAt = now()
                return s
            }
        }
    }
}
