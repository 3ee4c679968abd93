import Foundation
import GRDB
import Logging
import Metrics
import NIOPosix
import OutpostCore
import OutpostHTTP
import OutpostStore

#if canImport(Glibc)
    import Glibc
#endif

/// The relay's metrics (docs/metrics.md): counters of what uploads bring, recorded as they are stored, and at each
/// scrape what the index and the disk hold — machines and their last good backups, jobs, alerts, the forwarding
/// backlog — read in a few queries rather than kept up to date between scrapes.
public struct RelayMetrics: Sendable {
    /// What waits to be forwarded to the vault (the forwarder's ledger, which is not this module's, says).
    public struct Backlog: Sendable {
        public var points: Int
        public var bytes: Int64
        public var oldestWaiting: Date?
        public init(points: Int, bytes: Int64, oldestWaiting: Date?) {
            self.points = points
            self.bytes = bytes
            self.oldestWaiting = oldestWaiting
        }
    }

    let store: Store
    let clock: WallClock
    let logger: Logger
    /// nil on a relay not registered with a vault: then no forwarding metrics.
    let backlog: (@Sendable () throws -> Backlog)?

    public init(store: Store, clock: WallClock, logger: Logger, backlog: (@Sendable () throws -> Backlog)?) {
        self.store = store
        self.clock = clock
        self.logger = logger
        self.backlog = backlog
    }

    public static let receivedBytes = "outpost_relay_received_bytes_total"
    public static let receivedChunks = "outpost_relay_received_chunks_total"
    public static let storedBytes = "outpost_relay_stored_bytes_total"
    public static let storedChunks = "outpost_relay_stored_chunks_total"
    /// The `# HELP` lines of the counters (`MetricsRegistry.bootstrap(help:)`).
    public static let help = [
        receivedBytes: "Bytes of chunk uploads received from machines (compressed, as sent).",
        receivedChunks: "Chunks received from machines in uploads.",
        storedBytes: "Bytes written to the store's packs: what uploads brought that the store did not hold (after deduplication).",
        storedChunks: "Chunks written to the store's packs (after deduplication).",
    ]

    /// An upload verified and stored: what came in, and what of it was new to the store (after deduplication).
    static func recordUpload(receivedBytes: Int, receivedChunks: Int, stored: SaveStats) {
        Counter(label: Self.receivedBytes).increment(by: receivedBytes)
        Counter(label: Self.receivedChunks).increment(by: receivedChunks)
        Counter(label: Self.storedBytes).increment(by: stored.storedBytes)
        Counter(label: Self.storedChunks).increment(by: stored.blobs)
    }

    /// The upload counters at 0 from the start, so that a scrape before the first upload shows them.
    public static func prime() {
        recordUpload(receivedBytes: 0, receivedChunks: 0, stored: SaveStats())
    }

    /// Job durations, from a second to a day. History retention counts the jobs it deletes for these
    /// (`job_tallies`): a change of them loses the deleted jobs' bucket counts (their _count and _sum stay).
    static let jobBuckets: [Double] = [1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400]

    /// The scrape-time metrics as Prometheus text, read on the relay's blocking pool (SQLite and statvfs block).
    public func exposition() async -> [UInt8] {
        (try? await Relay.blockingPool.runIfActive { snapshot().exposition() }) ?? []
    }

    /// What the index and the disk hold now. A part that cannot be read is left out and logged; the rest is served.
    public func snapshot() -> MetricsSnapshot {
        let m = MetricsSnapshot()
        let now = clock.now()
        m.gauge(
            "outpost_build_info", "The running outpost's version (always 1).", 1, labels: [("role", "relay"), ("version", OutpostVersion.string)])
        part("machines") { try machines(m, now: now) }
        part("store") { try storeSize(m) }
        part("disk") { try disk(m) }
        part("jobs") { try jobs(m) }
        part("alerts") { try alerts(m, now: now) }
        return m
    }

    private func part(_ what: String, _ body: () throws -> Void) {
        do { try body() } catch {
            logger.warning("metrics: cannot read the \(what) metrics; left out of this scrape", metadata: ["error": "\(error)"])
        }
    }

    private func machines(_ m: MetricsSnapshot, now: Date) throws {
        let lastGood = try JobLog(store: store).lastGoodBackups()
        // Protected machines: enrolled (or holding points) and not removed; a pending token is no machine yet.
        let machines = try MachineCatalog(store: store).machines().filter { $0.removedAt == nil && ($0.enrolledAt != nil || $0.recoveryPoints > 0) }
        m.gauge("outpost_relay_machines", "Machines the relay protects.", Double(machines.count))
        for machine in machines {
            let labels = [("machine", machine.name)]
            m.gauge("outpost_relay_recovery_points", "Recovery points the relay holds, per machine.", Double(machine.recoveryPoints), labels: labels)
            // A committed point is a good backup too (points older than the jobs table have no job).
            let last = lastGood[machine.name] ?? machine.lastPointAt
            if let last {
                m.gauge(
                    "outpost_relay_machine_last_good_backup_timestamp_seconds", "When the machine's last good backup started (Unix time).",
                    last.timeIntervalSince1970, labels: labels)
            }
            // A machine with no good backup yet counts from its enrollment: it is as unprotected as one whose
            // backups stopped then.
            if let since = last ?? machine.enrolledAt {
                m.gauge(
                    "outpost_relay_machine_last_good_backup_age_seconds",
                    "Seconds since the machine's last good backup started (since its enrollment when it has none).",
                    max(0, now.timeIntervalSince(since)), labels: labels)
            }
        }
    }

    private func storeSize(_ m: MetricsSnapshot) throws {
        // From the packs table: a few rows per GB, unlike the blobs.
        let (bytes, chunks) = try store.index.read("reading the store's size for metrics") { db in
            let row = try Row.fetchOne(db, sql: "SELECT COALESCE(SUM(size), 0) AS bytes, COALESCE(SUM(blob_count), 0) AS chunks FROM packs")
            return ((row?["bytes"] as Int64?) ?? 0, (row?["chunks"] as Int64?) ?? 0)
        }
        m.gauge("outpost_relay_store_bytes", "Bytes of the store's packs (after deduplication and compression).", Double(bytes))
        m.gauge("outpost_relay_store_chunks", "Chunks (blobs) in the store's packs.", Double(chunks))
    }

    private func disk(_ m: MetricsSnapshot) throws {
        var s = statvfs()
        guard statvfs(store.layout.root, &s) == 0 else {
            throw OutpostError(.io, "statvfs of \(store.layout.root) failed (errno \(errno))")
        }
        let unit = Double(s.f_frsize)
        m.gauge("outpost_relay_disk_free_bytes", "Bytes free to the relay on the store's file system.", Double(s.f_bavail) * unit)
        m.gauge("outpost_relay_disk_size_bytes", "Size of the store's file system in bytes.", Double(s.f_blocks) * unit)
    }

    func jobs(_ m: MetricsSnapshot) throws {
        // Every job that ever ended, aggregated in SQL (the index `jobs_ended` read alone), with what history
        // retention deleted added (`job_tallies`): counters that never go down, no duration read one by one.
        let (ended, open) = try store.index.read("reading jobs for metrics") { db in
            let ended = try JobLog.endedTallies(db, bounds: Self.jobBuckets)
            let open = try Row.fetchAll(
                db, sql: "SELECT kind, state, COUNT(*) AS n FROM jobs WHERE state IN ('queued', 'running') GROUP BY kind, state")
            return (ended, open)
        }
        for t in ended {
            m.counter(
                "outpost_relay_jobs_total", "Jobs ended, by kind and outcome.", t.jobs,
                labels: [("kind", t.kind), ("outcome", Self.outcome(t.state))])
        }
        for row in open {
            m.gauge(
                "outpost_relay_jobs_in_progress", "Jobs queued or running, by kind.", Double(row["n"] as Int64),
                labels: [("kind", row["kind"]), ("state", row["state"])])
        }
        for t in ended {
            m.histogram(
                "outpost_relay_job_duration_seconds", "How long ended jobs ran, by kind and outcome.", buckets: Self.jobBuckets,
                labels: [("kind", t.kind), ("outcome", Self.outcome(t.state))], cumulativeCounts: t.buckets, sum: t.durationSum, count: t.jobs)
        }
    }

    /// A job's end state as a label value ("completed with warnings" → completed_with_warnings).
    static func outcome(_ state: String) -> String { state.replacingOccurrences(of: " ", with: "_") }

    private func alerts(_ m: MetricsSnapshot, now: Date) throws {
        let open = try AlertBook(store: store).open()
        for kind in Alert.Kind.allCases where kind != .test {
            m.gauge(
                "outpost_relay_alerts_open", "Open alerts, by kind (docs/alerts.md).", Double(open.count { $0.kind == kind }),
                labels: [("kind", kind.rawValue)])
        }
        guard let backlog else { return }
        let b = try backlog()
        m.gauge("outpost_relay_forwarding_backlog_points", "Recovery points waiting to be forwarded to the vault.", Double(b.points))
        m.gauge(
            "outpost_relay_forwarding_backlog_bytes", "Stored bytes the vault has not acknowledged yet (0 when no point waits).",
            Double(b.bytes))
        m.gauge(
            "outpost_relay_vault_lag_seconds", "Seconds since the oldest point still waiting for the vault finished (0: none waits).",
            b.oldestWaiting.map { max(0, now.timeIntervalSince($0)) } ?? 0)
        m.gauge(
            "outpost_relay_vault_up", "1 unless the vault-unreachable alert is open (checked every [alerts] check_interval_seconds).",
            open.contains { $0.kind == .vaultUnreachable } ? 0 : 1)
    }
}
