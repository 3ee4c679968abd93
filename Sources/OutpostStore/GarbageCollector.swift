import Foundation
import Logging
import OutpostCore

/// What a gc did (or, with `dryRun`, would do).
public struct GCReport: Sendable, Encodable {
    public var dryRun = false
    /// Blobs stored or relied on before this time, and packs made before it, could go.
    public var cutoff = Date.distantPast
    public var points = 0
    /// Points forgotten within the grace period, whose data was kept for pushes that may build on them.
    public var forgottenPointsKept = 0
    public var liveBlobs = 0
    public var deadBlobs = 0
    public var packsDeleted = 0
    public var packsRepacked = 0
    public var packsWritten = 0
    public var unindexedPacksDeleted = 0
    public var temporaryFilesDeleted = 0
    public var bytesFreed: Int64 = 0
    /// Packs left alone because they are younger than the grace period.
    public var packsInGrace = 0
    /// Blobs a push relied on while gc ran: kept, with their packs, for a later gc.
    public var blobsTouchedDuringGC = 0
    public var packsKeptForTouchedBlobs = 0
}

/// Removes what no recovery point needs, while the store serves: no exclusive lock, and nothing a push in
/// flight or a commit not yet landed relies on is deleted (the argument: docs/format.md §13).
///
/// A blob goes only if it is unreachable from the committed points, from the points forgotten within the grace
/// period and from the trees touched within it, was last stored or relied on before `cutoff` (= `now` − `grace`),
/// and sits in a pack made before the cutoff. Every deletion is checked again in the transaction that makes it.
/// The index commits first, the old files go after; a gc killed anywhere is finished by the next.
///
/// The relay's daily prune calls it in-process: `GarbageCollector(store: relay.store).run()`.
public struct GarbageCollector {
    /// As Proxmox Backup Server's: longer than any push, so that what a push was told is stored outlives it.
    public static let defaultGrace: TimeInterval = 24 * 3600
    /// The shortest grace beside other jobs: it must exceed `StoreIndex.touchRefresh` and the longest push.
    /// Shorter (down to 0) needs the store's exclusive lock.
    public static let minimumOnlineGrace: TimeInterval = 3600

    let store: Store
    /// A pack is rewritten when at least this share of its bytes is dead.
    let repackThreshold: Double
    let grace: TimeInterval
    let now: Date
    let dryRun: Bool
    let logger: Logger
    /// Root trees kept without their chunks: the points a relay pruned that the vault still holds
    /// (`PrunedPoints.roots`), whose trees a vault-tier restore and vault retention read here.
    let treeRoots: [BlobID]
    /// Tests: stop after the first index commit, before deleting files, as a gc killed there would.
    var stopBeforeDeletingFiles = false

    public init(
        store: Store, repackThreshold: Double = 0.1, grace: TimeInterval = GarbageCollector.defaultGrace, now: Date = Date(),
        dryRun: Bool = false, treeRoots: [BlobID] = [], logger: Logger = Logger(label: "outpost.gc")
    ) {
        self.treeRoots = treeRoots
        self.store = store
        self.repackThreshold = repackThreshold
        self.grace = grace
        self.now = now
        self.dryRun = dryRun
        self.logger = logger
    }

    public var cutoff: Date { now.addingTimeInterval(-grace) }

    public func run() throws -> GCReport {
        guard grace >= Self.minimumOnlineGrace || store.lockMode == .exclusive else {
            throw StoreError(
                .invalid,
                "a gc grace of \(Self.hours(grace)) is shorter than the \(Self.hours(Self.minimumOnlineGrace)) that is safe while other jobs use the store \(store.layout.root); give at least \(Self.hours(Self.minimumOnlineGrace)), or open the store with the exclusive lock (`outpost store gc` does when the grace is shorter)"
            )
        }
        let lock: GCLock? = try dryRun ? nil : GCLock(layout: store.layout)
        defer { withExtendedLifetime(lock) {} }
        var report = GCReport()
        report.dryRun = dryRun
        report.cutoff = cutoff
        let index = store.index

        var marker = LivenessMarker(store: store)
        let points = try index.points()
        report.points = points.count
        var roots: [BlobID] = []
        for info in points {
            marker.insert(info.id)
            guard let root = info.point.root else {
                throw StoreError(
                    .corrupt, "recovery point \(info.id.shortHex) has no valid root; gc stopped without deleting anything — run `outpost check`")
            }
            roots.append(root)
        }
        try marker.mark(roots, required: true)
        let forgotten = try index.forgottenRoots(since: cutoff)
        report.forgottenPointsKept = forgotten.count
        try marker.mark(forgotten, required: false)
        try marker.mark(try index.read("listing young trees") { db in try StoreIndex.youngTrees(db, since: cutoff) }, required: false)
        try marker.markTrees(treeRoots)

        let plan = try GCPlan(index: index, live: marker.live, cutoff: cutoff, repackThreshold: repackThreshold)
        report.liveBlobs = plan.liveBlobs
        report.packsInGrace = plan.packsInGrace
        if dryRun {
            report.deadBlobs = plan.deadBlobs
            report.packsDeleted = plan.work.count(where: { !$0.repack })
            report.packsRepacked = plan.work.count(where: { $0.repack })
            report.bytesFreed = plan.bytesToFree
            addLeftovers(try LeftoverFiles(store: store, cutoff: cutoff, dryRun: true).sweep(), to: &report)
            return report
        }

        var sweeper = GCSweeper(store: store, cutoff: cutoff)
        sweeper.stopBeforeDeletingFiles = stopBeforeDeletingFiles
        for batch in plan.batches() {
            let o = try sweeper.sweep(batch, marker: &marker)
            report.deadBlobs += o.deletedBlobs
            report.blobsTouchedDuringGC += o.keptTouched
            report.packsKeptForTouchedBlobs += o.packsKept
            report.packsDeleted += o.packsDeleted
            report.packsRepacked += o.packsRepacked
            report.packsWritten += o.packsWritten
            report.bytesFreed += o.bytesFreed
            if o.stopped { return report }
        }
        addLeftovers(try LeftoverFiles(store: store, cutoff: cutoff, dryRun: false).sweep(), to: &report)
        logger.info(
            "gc done",
            metadata: [
                "deleted blobs": "\(report.deadBlobs)", "bytes freed": "\(report.bytesFreed)", "kept (touched)": "\(report.blobsTouchedDuringGC)",
            ])
        return report
    }

    private func addLeftovers(_ o: LeftoverFiles.Outcome, to report: inout GCReport) {
        report.unindexedPacksDeleted = o.packsDeleted
        report.temporaryFilesDeleted = o.temporaryDeleted
        report.bytesFreed += o.bytesFreed
    }

    static func hours(_ t: TimeInterval) -> String {
        let h = t / 3600
        return h == h.rounded() ? "\(Int(h)) h" : String(format: "%.2f h", h)
    }
}
