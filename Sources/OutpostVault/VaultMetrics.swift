import Foundation
import Metrics
import OutpostCore
import OutpostHTTP
import OutpostObjects

/// The vault's own metrics (docs/metrics.md), beside the requests every server counts: bytes relays stored, by
/// relay container, as they are stored; at each scrape, the relays the registry holds.
public struct VaultMetrics: Sendable {
    let registry: VaultRegistry
    let replica: ReplicaMonitor?

    public init(registry: VaultRegistry, replica: ReplicaMonitor? = nil) {
        self.registry = registry
        self.replica = replica
    }

    public static let storedBytes = "outpost_vault_stored_bytes_total"
    public static let storedObjects = "outpost_vault_stored_objects_total"
    /// The `# HELP` lines of the counters (`MetricsRegistry.bootstrap(help:)`).
    public static let help = [
        storedBytes: "Bytes of new objects stored in each relay's container since the vault started.",
        storedObjects: "New objects stored in each relay's container since the vault started.",
    ]

    /// A new object in a relay's container (a put of an object it already held stores nothing).
    static func recordStored(relay: String, bytes: Int) {
        Counter(label: Self.storedBytes, dimensions: [("relay", relay)]).increment(by: bytes)
        Counter(label: Self.storedObjects, dimensions: [("relay", relay)]).increment()
    }

    /// The registry's relays, read from memory (no storage is listed at scrape time).
    public func snapshot() -> MetricsSnapshot {
        let m = MetricsSnapshot()
        m.gauge(
            "outpost_build_info", "The running outpost's version (always 1).", 1, labels: [("role", "vault"), ("version", OutpostVersion.string)])
        let relays = registry.relays
        m.gauge(
            "outpost_vault_relays", "Relays registered, by state (removed: kept in soft delete until purged).",
            Double(relays.count { $0.removedAt == nil }), labels: [("state", "active")])
        m.gauge(
            "outpost_vault_relays", "Relays registered, by state (removed: kept in soft delete until purged).",
            Double(relays.count { $0.removedAt != nil }), labels: [("state", "removed")])
        for r in relays {
            m.gauge(
                "outpost_vault_relay_info", "Each registered relay's id (the relay label of other metrics) and name (always 1).", 1,
                labels: [("relay", r.id), ("name", RelayName.printable(r.name)), ("state", r.removedAt == nil ? "active" : "removed")])
        }
        // With GRS, from the start (0 until the first round has read the backlog).
        if let status = replica?.status {
            m.gauge(
                "outpost_vault_replica_backlog_objects", "GRS: writes and deletes the secondary copy set has not taken yet.",
                Double(status.backlog.objects))
            m.gauge(
                "outpost_vault_replica_lag_seconds", "GRS: age of the oldest write the secondary copy set has not taken (0: caught up).",
                status.lagSeconds(now: Date()))
            m.gauge(
                "outpost_vault_replica_check_failed", "GRS: 1 when the last round could not read the backlog (the primary failed).",
                status.failure == nil ? 0 : 1)
        }
        return m
    }
}
