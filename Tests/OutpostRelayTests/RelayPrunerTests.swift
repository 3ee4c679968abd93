import Foundation
import GRDB
import Logging
import OutpostCore
import OutpostStore
import Synchronization
import Testing

@testable import OutpostRelay

/// A store with the relay's tables and recovery points made to measure: each point has a tree with one file of
/// its own content, so what a prune frees can be counted.
final class PruneFixture: Sendable {
    let path = NSTemporaryDirectory() + "/outpost-prune-\(UUID().uuidString.prefix(8))"
    let store: Store
    /// 2026-03-15 12:00 UTC.
    static let now = Date(timeIntervalSince1970: 1_773_576_000)

    init() throws {
        StoreIndex.registerMigrations(MachineCatalog.migrations + RetentionSettings.migrations)
        store = try Store.initialize(at: path)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// A point of `machine` finished `daysAgo` days before `now`.
    @discardableResult
    func point(_ machine: String, daysAgo: Double, keepUntil: Date? = nil) throws -> BlobID {
        let content = Array("\(machine) \(daysAgo) \(UUID())".utf8)
        let chunk = try store.saveBlob(kind: .data, plaintext: content)
        let tree = Tree(nodes: [
            Node(name: Array("f".utf8), type: .file, size: UInt64(content.count), extents: [.chunk(chunk, length: content.count)])
        ])
        let root = try store.saveBlob(kind: .tree, plaintext: tree.encode())
        let at = Self.now.addingTimeInterval(-daysAgo * 86400)
        let p = RecoveryPoint(
            machine: machine, hostname: machine, paths: ["/"], startedAt: at, finishedAt: at, rootTree: root, parent: nil,
            summary: BackupSummary(), keepUntil: keepUntil)
        return try store.commit(p).id
    }

    func remaining(_ machine: String) throws -> [BlobID] { try store.index.points(machine: machine).map(\.id) }

    func pruner(_ file: RetentionPolicy) -> RelayPruner { RelayPruner(store: store, file: file, timeZone: TimeZone(identifier: "UTC")!) }
}

extension PrunePlan {
    func point(_ id: BlobID) -> PointPrune? { machines.flatMap(\.points).first { $0.id == id.hex } }
}

@Suite struct RelayPrunerTests {
    /// With a vault, a point the rules let go stays until it is forwarded; once forwarded it leaves, and the
    /// vault tier still counts it (pruned earlier).
    @Test func aPointLeavesTheRelayOnlyOnceForwarded() throws {
        let f = try PruneFixture()
        let old = try f.point("web1", daysAgo: 3), middle = try f.point("web1", daysAgo: 2), newest = try f.point("web1", daysAgo: 1)
        let pruner = f.pruner(RetentionPolicy(relayLast: 1))
        let plan = try pruner.plan(forwarding: [old: "forwarded", newest: "forwarded"], now: PruneFixture.now)
        #expect(plan.point(old)?.relay == PrunePlan.Verdict(action: "leaves", reasons: ["not among the newest 1 (relay_last)"]))
        #expect(plan.point(middle)?.relay.action == "stays")
        #expect(plan.point(middle)?.relay.reasons == ["not forwarded yet (pending); it leaves once the vault has it"])
        #expect(plan.point(newest)?.relay.reasons == ["newest point of the machine", "among the newest 1 (relay_last)"])
        #expect(plan.waitingForForwarding == 1)
        let applied = try pruner.apply(plan)
        #expect(applied.applied)
        #expect(try f.remaining("web1") == [middle, newest])

        let next = try pruner.plan(forwarding: [newest: "forwarded", middle: "forwarded"], now: PruneFixture.now)
        #expect(next.point(old)?.relay.action == "pruned earlier", "the vault still holds it")
        #expect(next.point(middle)?.relay.action == "leaves")
    }

    /// --force takes a point that is not forwarded yet; it is not remembered as held by the vault.
    @Test func forceRemovesPointsNotForwardedYet() throws {
        let f = try PruneFixture()
        let old = try f.point("web1", daysAgo: 3), newest = try f.point("web1", daysAgo: 1)
        let pruner = f.pruner(RetentionPolicy(relayLast: 1))
        let plan = try pruner.plan(forwarding: [:], force: true, now: PruneFixture.now)
        #expect(plan.point(old)?.relay.action == "leaves")
        #expect(plan.point(old)?.relay.reasons.last == "not forwarded yet (pending), removed anyway (--force)")
        try pruner.apply(plan)
        #expect(try f.remaining("web1") == [newest])
        #expect(try pruner.plan(forwarding: [:], now: PruneFixture.now).point(old) == nil)
    }

    /// A relay with no vault prunes by the relay rules alone, and says there is no vault tier.
    @Test func withoutAVaultTheRelayRulesAloneDecide() throws {
        let f = try PruneFixture()
        let a = try f.point("web1", daysAgo: 20), b = try f.point("web1", daysAgo: 15), c = try f.point("web1", daysAgo: 13)
        let pruner = f.pruner(RetentionPolicy(relayDays: 14, vaultDaily: 7))
        let plan = try pruner.plan(forwarding: nil, now: PruneFixture.now)
        #expect(!plan.vaultRegistered)
        #expect(plan.leaving.map { $0.point.id } == [a.hex, b.hex])
        #expect(plan.point(a)?.relay.reasons == ["older than 14 days (relay_days)"])
        #expect(plan.point(a)?.vault.action == "no vault")
        try pruner.apply(plan)
        #expect(try f.remaining("web1") == [c])
    }

    /// keep-until outlives the policy on the relay; one that has passed does not.
    @Test func aPointKeptUntilALaterDateStays() throws {
        let f = try PruneFixture()
        let kept = try f.point("web1", daysAgo: 30, keepUntil: PruneFixture.now.addingTimeInterval(86400))
        let lapsed = try f.point("web1", daysAgo: 29, keepUntil: PruneFixture.now.addingTimeInterval(-1))
        let newest = try f.point("web1", daysAgo: 1)
        let pruner = f.pruner(RetentionPolicy(relayLast: 1))
        try pruner.apply(try pruner.plan(forwarding: nil, now: PruneFixture.now))
        #expect(try f.remaining("web1") == [kept, newest])
        _ = lapsed
    }

    /// A point the vault's retention deleted there is no longer waiting for forwarding: the relay rules let it
    /// go like a forwarded one, and it is not remembered as held by the vault.
    @Test func aPointExpiredInTheVaultLeavesTheRelayByItsRules() throws {
        let f = try PruneFixture()
        let old = try f.point("web1", daysAgo: 3), newest = try f.point("web1", daysAgo: 0.5)
        let pruner = f.pruner(RetentionPolicy(relayLast: 1))
        let plan = try pruner.apply(try pruner.plan(forwarding: [old: "expired", newest: "forwarded"], now: PruneFixture.now))
        #expect(plan.point(old)?.relay.action == "leaves")
        #expect(plan.point(old)?.vault.action == "expired")
        #expect(try f.remaining("web1") == [newest])
        #expect(try PrunedPoints(store: f.store).list().isEmpty, "the vault no longer holds it")
    }

    /// The vault tier is decided and reported; the relay pruner never applies it (the vault's retention does,
    /// `VaultRetention`): nothing leaves the relay because of it.
    @Test func vaultExpiryIsReportedAndLeftToTheVault() throws {
        let f = try PruneFixture()
        let morning = try f.point("web1", daysAgo: 2.4), evening = try f.point("web1", daysAgo: 2.1), newest = try f.point("web1", daysAgo: 0.5)
        let all = [morning: "forwarded", evening: "forwarded", newest: "forwarded"]
        let pruner = f.pruner(RetentionPolicy(vaultDaily: 7))
        let plan = try pruner.apply(try pruner.plan(forwarding: all, now: PruneFixture.now))
        #expect(plan.point(morning)?.vault.action == "expires")
        #expect(plan.point(evening)?.vault.reasons == ["newest of day 2026-03-13 (vault_daily)"])
        #expect(plan.count(vault: "expires") == 1)
        #expect(plan.vaultTier.contains("not applied"))
        #expect(plan.expiring.map(\.id) == [morning])
        #expect(try f.remaining("web1") == [morning, evening, newest], "no relay rule: the relay keeps everything")
    }

    @Test func oneMachineOrAnUnknownOne() throws {
        let f = try PruneFixture()
        try f.point("web1", daysAgo: 3)
        try f.point("web2", daysAgo: 3)
        let pruner = f.pruner(RetentionPolicy(relayLast: 1))
        #expect(try pruner.plan(machine: "web2", forwarding: nil).machines.map(\.machine) == ["web2"])
        let e = #expect(throws: OutpostError.self) { try pruner.plan(machine: "nobody", forwarding: nil) }
        #expect(e?.exitCode == .notFound && e?.message.contains("no machine named nobody") == true)
    }

    /// What gc would free: the pruned point's record, tree and chunk; a dry run counts them before removing.
    @Test func reclaimableSpaceCountsWhatPrunedPointsLeaveBehind() throws {
        let f = try PruneFixture()
        let old = try f.point("web1", daysAgo: 3)
        try f.point("web1", daysAgo: 1)
        #expect(try ReclaimableSpace.estimate(store: f.store) == ReclaimableSpace())
        let ahead = try ReclaimableSpace.estimate(store: f.store, without: [old])
        #expect(ahead.blobs == 3 && ahead.bytes > 3 * 44)
        let pruner = f.pruner(RetentionPolicy(relayLast: 1))
        try pruner.apply(try pruner.plan(forwarding: nil, now: PruneFixture.now))
        #expect(try ReclaimableSpace.estimate(store: f.store) == ahead)
    }

    /// `relay serve` runs the online gc after each daily prune. The data of a point pruned today is kept by that
    /// day's gc (forgotten within the grace) and freed by the next day's. Without the gc hook nothing is freed.
    @Test func theDailyPruneRunsGCWhichFreesPrunedDataADayLater() async throws {
        let f = try PruneFixture()
        let old = try f.point("web1", daysAgo: 3)
        try f.point("web1", daysAgo: 1)
        // An hour ahead of the wall clock, which stamps blobs and forgotten points: the margin is the grace's. The
        // prune time is 10 minutes after the clock's start, whatever the time of day the test runs at (a fixed
        // 03:00 made the first prune nearly a day later when the test ran between 02:00 and 03:00 UTC).
        let start = Date().addingTimeInterval(3600)
        let clock = Mutex(start)
        let reports = Mutex<[GCReport]>([])
        let pruner = f.pruner(RetentionPolicy(relayLast: 1))
        let firstPrune = Int(start.addingTimeInterval(600).timeIntervalSince1970.truncatingRemainder(dividingBy: 86400)) / 60
        let service = PruneService(
            at: firstPrune, timeZone: TimeZone(identifier: "UTC")!, clock: { clock.withLock { $0 } },
            wait: { s in clock.withLock { $0.addTimeInterval(s) } }, logger: Logger(label: "prune-gc-test"),
            gc: {
                let r = try GarbageCollector(store: f.store, now: clock.withLock { $0 }).run()
                reports.withLock { $0.append(r) }
                return r
            }
        ) { now in try pruner.apply(try pruner.plan(forwarding: nil, now: now)) }
        try await service.loop(days: 2)
        #expect(try !f.remaining("web1").contains(old))
        let r = reports.withLock { $0 }
        #expect(r.count == 2, "one gc after each day's prune")
        #expect(r.first?.forgottenPointsKept == 1 && r.first?.deadBlobs == 0, "pruned today: kept for the grace")
        #expect(r.last?.forgottenPointsKept == 0 && (r.last?.deadBlobs ?? 0) >= 2, "a day later: its tree and chunk go")
    }
}
