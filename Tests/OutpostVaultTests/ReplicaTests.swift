import Foundation
import Logging
import OutpostCore
import OutpostObjects
import OutpostVault
import Synchronization
import Testing

/// GRS with a secondary that fails (docs/vault.md §3.1): the primary answers, the miss is kept as pending with
/// the time of the first miss, catch-up replays it, and nothing deleted comes back through the secondary.
@Suite struct ReplicaTests {
    /// A store that fails every call while `down` is set, as an unreachable or full secondary does.
    final class Switchable: ObjectStore {
        let inner = MemoryObjectStore()
        let down = Mutex(false)
        func check() throws { if down.withLock({ $0 }) { throw ObjectStoreError(.io, "the secondary is unreachable (test)") } }
        func putIfAbsent(_ key: String, _ bytes: [UInt8]) throws -> Bool { try check(); return try inner.putIfAbsent(key, bytes) }
        func get(_ key: String) throws -> [UInt8]? { try check(); return try inner.get(key) }
        func get(_ key: String, range: Range<Int>) throws -> [UInt8]? { try check(); return try inner.get(key, range: range) }
        func list(prefix: String) throws -> [ObjectInfo] { try check(); return try inner.list(prefix: prefix) }
        func delete(_ key: String) throws { try check(); try inner.delete(key) }
    }

    final class Clock: Sendable {
        let t = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        func advance(_ s: TimeInterval) { t.withLock { $0 += s } }
        var now: @Sendable () -> Date { { self.t.withLock { $0 } } }
    }

    func make() -> (ReplicatedObjectStore, primary: MemoryObjectStore, secondary: Switchable, clock: Clock) {
        let primary = MemoryObjectStore(), secondary = Switchable(), clock = Clock()
        return (ReplicatedObjectStore(primary: primary, secondary: secondary, now: clock.now), primary, secondary, clock)
    }

    @Test func aSecondaryThatIsDownDelaysItsCopyButNotTheWrite() throws {
        let (grs, primary, secondary, clock) = make()
        secondary.down.withLock { $0 = true }
        #expect(try grs.putIfAbsent("containers/a/p1", [1, 2, 3]), "the primary took it and answers")
        #expect(try primary.get("containers/a/p1") == [1, 2, 3])
        let first = clock.now()
        clock.advance(60)
        _ = try grs.putIfAbsent("containers/a/p1", [1, 2, 3])
        _ = try grs.putIfAbsent("containers/a/p2", [4])
        let backlog = try grs.backlog()
        #expect(backlog.objects == 2)
        #expect(backlog.oldest == first, "a second miss of one key keeps the first miss's time")
        #expect(backlog.lagSeconds(now: clock.now()) == 60)
        #expect(try grs.list(prefix: "").map(\.key) == ["containers/a/p1", "containers/a/p2"], "pending entries are not listed")

        #expect(try grs.catchUp().objects == 2, "still down: nothing replayed, nothing dropped")
        secondary.down.withLock { $0 = false }
        #expect(try grs.catchUp() == .init(objects: 0, oldest: nil))
        #expect(try secondary.inner.get("containers/a/p1") == [1, 2, 3])
        #expect(try secondary.inner.get("containers/a/p2") == [4])
        #expect(try primary.list(prefix: ReplicatedObjectStore.pendingPrefix).isEmpty)
    }

    @Test func aDeleteTheSecondaryMissedDoesNotBringTheObjectBack() throws {
        let (grs, _, secondary, _) = make()
        _ = try grs.putIfAbsent("containers/a/p/x", [9])
        secondary.down.withLock { $0 = true }
        try grs.delete("containers/a/p/x")
        secondary.down.withLock { $0 = false }
        #expect(try secondary.inner.get("containers/a/p/x") == [9], "the secondary still holds it")
        #expect(try grs.list(prefix: "containers/a/").isEmpty, "but the vault does not list it")
        try grs.catchUp()
        #expect(try secondary.inner.get("containers/a/p/x") == nil)
        #expect(try grs.backlog().objects == 0)
    }

    @Test func aKeyPutAgainAfterAMissedDeleteKeepsItsNewCopy() throws {
        let (grs, _, secondary, _) = make()
        _ = try grs.putIfAbsent("k", [1])
        secondary.down.withLock { $0 = true }
        try grs.delete("k")
        secondary.down.withLock { $0 = false }
        _ = try grs.putIfAbsent("k", [2])
        try grs.catchUp()
        #expect(try grs.get("k") == [2])
        #expect(try grs.list(prefix: "").map(\.key) == ["k"])
        #expect(try grs.backlog().objects == 0)
    }

    @Test func aFailingPrimaryFailsTheWrite() throws {
        let primary = Switchable(), secondary = MemoryObjectStore()
        let grs = ReplicatedObjectStore(primary: primary, secondary: secondary)
        primary.down.withLock { $0 = true }
        #expect(throws: ObjectStoreError.self) { try grs.putIfAbsent("k", [1]) }
        #expect(try secondary.get("k") == nil, "the primary decides: the secondary never gets what the primary did not take")
    }

    @Test func reconcileCopiesWhatNoPendingEntryRecords() throws {
        let (grs, primary, secondary, _) = make()
        _ = try grs.putIfAbsent("a", [1])
        // As a vault killed between the primary's write and the secondary's.
        _ = try primary.putIfAbsent("b", [2])
        #expect(try grs.backlog().objects == 0, "nothing recorded it")
        #expect(try grs.reconcile() == 1)
        #expect(try secondary.inner.get("b") == [2])
        #expect(try grs.reconcile() == 0)
    }

    @Test func theMonitorReportsTheLagAndClearsIt() throws {
        let (grs, _, secondary, clock) = make()
        let monitor = ReplicaMonitor(store: grs, logger: Logger(label: "test"), now: clock.now)
        #expect(monitor.status.checkedAt == nil)
        secondary.down.withLock { $0 = true }
        _ = try grs.putIfAbsent("k", [1])
        clock.advance(ReplicaMonitor.warnAfter + 1)
        var status = monitor.round()
        #expect(status.backlog.objects == 1)
        #expect(status.lagSeconds(now: clock.now()) == ReplicaMonitor.warnAfter + 1)
        #expect(status.lastReconcile == nil, "the reconcile failed with the secondary down, so it is tried again")
        secondary.down.withLock { $0 = false }
        status = monitor.round()
        #expect(status.backlog.objects == 0 && status.failure == nil && status.lastReconcile != nil)
    }
}
