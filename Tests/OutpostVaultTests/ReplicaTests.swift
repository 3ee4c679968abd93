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
        #expect(backlog.objects == 3, "each miss counts, two of them of one key")
        #expect(backlog.oldest == first, "the age is the oldest miss's")
        #expect(try grs.pending().map(\.key) == ["containers/a/p1", "containers/a/p2"], "one entry per key, oldest first")
        #expect(try grs.pending().first?.since == first)
        #expect(backlog.lagSeconds(now: clock.now()) == 60)
        #expect(try grs.list(prefix: "").map(\.key) == ["containers/a/p1", "containers/a/p2"], "pending entries are not listed")

        #expect(try grs.catchUp().objects == 3, "still down: nothing replayed, nothing dropped")
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
        #expect(try grs.get("containers/a/p/x") == nil, "nor read it")
        #expect(try grs.get("containers/a/p/x", range: 0..<1) == nil)
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

    /// A secondary that fails ends the round at its first failure: one attempt per round, not one per entry.
    @Test func aRoundStopsAtTheSecondarysFirstFailure() throws {
        final class Counting: ObjectStore {
            let inner = MemoryObjectStore()
            let attempts = Mutex(0)
            func putIfAbsent(_ key: String, _ bytes: [UInt8]) throws -> Bool {
                attempts.withLock { $0 += 1 }
                throw ObjectStoreError(.io, "down (test)")
            }
            func get(_ key: String) throws -> [UInt8]? { try inner.get(key) }
            func get(_ key: String, range: Range<Int>) throws -> [UInt8]? { try inner.get(key, range: range) }
            func list(prefix: String) throws -> [ObjectInfo] { try inner.list(prefix: prefix) }
            func delete(_ key: String) throws { try inner.delete(key) }
        }
        let primary = MemoryObjectStore(), secondary = Counting()
        let grs = ReplicatedObjectStore(primary: primary, secondary: secondary)
        for i in 0..<20 { _ = try grs.putIfAbsent("k\(i)", [UInt8(i)]) }
        secondary.attempts.withLock { $0 = 0 }
        #expect(try grs.catchUp().objects == 20)
        #expect(secondary.attempts.withLock { $0 } == 1)
    }

    /// A miss recorded during a replay of its key is not dropped with the misses the round listed.
    @Test func aMissDuringAReplayStaysForTheNextRound() throws {
        /// A secondary that is back, during whose first put the vault records another miss of the same key.
        final class Racing: ObjectStore {
            let inner = MemoryObjectStore()
            let onPut = Mutex<(@Sendable () -> Void)?>(nil)
            func putIfAbsent(_ key: String, _ bytes: [UInt8]) throws -> Bool {
                if let f = onPut.withLock({ f in
                    defer { f = nil }; return f
                }) {
                    f()
                }
                return try inner.putIfAbsent(key, bytes)
            }
            func get(_ key: String) throws -> [UInt8]? { try inner.get(key) }
            func get(_ key: String, range: Range<Int>) throws -> [UInt8]? { try inner.get(key, range: range) }
            func list(prefix: String) throws -> [ObjectInfo] { try inner.list(prefix: prefix) }
            func delete(_ key: String) throws { try inner.delete(key) }
        }
        let primary = MemoryObjectStore(), secondary = Switchable(), racing = Racing(), clock = Clock()
        let missing = ReplicatedObjectStore(primary: primary, secondary: secondary, now: clock.now)
        secondary.down.withLock { $0 = true }
        _ = try missing.putIfAbsent("k", [1])
        let grs = ReplicatedObjectStore(primary: primary, secondary: racing, now: clock.now)
        racing.onPut.withLock {
            $0 = {
                clock.advance(1)
                _ = try? missing.putIfAbsent("k", [1])
            }
        }
        #expect(try grs.catchUp().objects == 0, "the round counts what it listed")
        #expect(try grs.backlog().objects == 1, "the miss recorded meanwhile waits for the next round")
        try grs.catchUp()
        #expect(try grs.backlog().objects == 0)
    }
}
