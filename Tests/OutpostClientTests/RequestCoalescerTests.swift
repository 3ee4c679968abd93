import OutpostCore
import Synchronization
import Testing

@testable import OutpostClient

/// The client's group commit: callers that queue behind a busy slot leave together, within the weight limit,
/// and share their request's fate.
@Suite struct RequestCoalescerTests {
    struct Boom: Error {}

    final class Recorder: Sendable {
        let batches = Mutex<[[String]]>([])
    }

    /// A coalescer with one slot whose requests wait for `gate` and are recorded in `batches`.
    final class Rig: Sendable {
        let gate = AsyncSemaphore(permits: 0)
        let recorder = Recorder()
        let coalescer: RequestCoalescer<String, String>

        init(maxWeight: Int = 100, failOn: String? = nil) {
            let gate = self.gate, recorder = self.recorder
            coalescer = RequestCoalescer(limit: 1, maxWeight: maxWeight) { parts in
                recorder.batches.withLock { $0.append(parts) }
                await gate.acquire()
                if let failOn, parts.contains(failOn) { throw Boom() }
                return parts.map { $0.uppercased() }
            }
        }

        /// Waits (yielding, no timer) until `n` parts are queued behind the busy slot.
        func waitQueued(_ n: Int) async {
            while coalescer.queued < n { await Task.yield() }
        }

        func waitBatches(_ n: Int) async {
            while recorder.batches.withLock({ $0.count }) < n { await Task.yield() }
        }
    }

    @Test func callersQueuedBehindABusySlotLeaveInOneRequest() async throws {
        let rig = Rig()
        async let a = rig.coalescer.submit("a", weight: 1)
        await rig.waitBatches(1)
        async let b = rig.coalescer.submit("b", weight: 1)
        async let c = rig.coalescer.submit("c", weight: 1)
        async let d = rig.coalescer.submit("d", weight: 1)
        await rig.waitQueued(3)
        rig.gate.release()
        rig.gate.release()
        let answers = try await [a, b, c, d]
        #expect(answers == ["A", "B", "C", "D"])
        let batches = rig.recorder.batches.withLock { $0 }
        #expect(batches.count == 2)
        #expect(batches.first == ["a"])
        #expect(Set(batches.last ?? []) == ["b", "c", "d"])
    }

    @Test func aBatchStaysWithinTheWeightLimit() async throws {
        let rig = Rig(maxWeight: 10)
        async let a = rig.coalescer.submit("a", weight: 6)
        await rig.waitBatches(1)
        async let b = rig.coalescer.submit("b", weight: 6)
        await rig.waitQueued(1)
        async let c = rig.coalescer.submit("c", weight: 6)
        await rig.waitQueued(2)
        async let d = rig.coalescer.submit("d", weight: 3)
        await rig.waitQueued(3)
        for _ in 0..<3 { rig.gate.release() }
        _ = try await [a, b, c, d]
        #expect(rig.recorder.batches.withLock { $0 } == [["a"], ["b"], ["c", "d"]])
    }

    @Test func aFailedRequestFailsEveryPartInItAndOnlyThose() async throws {
        let rig = Rig(failOn: "c")
        async let a = rig.coalescer.submit("a", weight: 1)
        await rig.waitBatches(1)
        let b = Task { try await rig.coalescer.submit("b", weight: 1) }
        await rig.waitQueued(1)
        let c = Task { try await rig.coalescer.submit("c", weight: 1) }
        await rig.waitQueued(2)
        rig.gate.release()
        rig.gate.release()
        #expect(try await a == "A")
        await #expect(throws: Boom.self) { try await b.value }
        await #expect(throws: Boom.self) { try await c.value }
        // The slot is free again afterwards.
        rig.gate.release()
        #expect(try await rig.coalescer.submit("e", weight: 1) == "E")
    }
}
