import Foundation
import OutpostCore
import OutpostHTTP
import OutpostRelay
import OutpostStore
import Synchronization
import Testing

/// gc while the relay serves (docs/format.md §13): a chunk the relay answered "present" for survives a gc that
/// runs before the commit; a push that outlived the grace is refused, never committed with missing data; and
/// pushes of several machines beside a gc in a loop all land and restore exactly.
@Suite struct OnlineGCRelayTests {
    static let day: TimeInterval = 86400

    func chunk(_ seed: UInt64, _ count: Int = 8_000) -> [UInt8] {
        var state = seed &* 0x9e37_79b9_7f4a_7c15 &+ 1
        return (0..<count).map { _ in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
    }

    @Test func aChunkToldPresentSurvivesAGCAndTheCommitLands() throws {
        let t = try TestRelay()
        let store = t.relay.store
        let m1 = try PushSimulator(relay: t.relay, name: "m1")
        // Two days ago a push of m1 sent two chunks and died before committing.
        let (told, unasked) = (chunk(1), chunk(2))
        try m1.send([PushSimulator.blob(told), PushSimulator.blob(unasked)])
        try store.flush()
        try store.index.backdate(by: 2 * Self.day)
        // Today's push asks: `told` is present, so the push will not send it.
        #expect(try t.relay.missing(machine: m1.machine, [PushSimulator.blob(told).id]).isEmpty)
        let r = try GarbageCollector(store: store).run()
        #expect(r.deadBlobs == 1, "the chunk nobody asked for went")
        #expect(try store.index.location(of: PushSimulator.blob(unasked).id) == nil)
        let info = try m1.push(new: ["f": [told]])
        #expect(try PushSimulator.restore(info, from: store) == ["f": told])
    }

    /// The push was told "present", then ran longer than the grace: the gc deletes the chunk, and the commit's
    /// check turns that into a refusal (the client runs the backup again), never a point with missing data.
    @Test func aPushThatOutlivesTheGraceIsRefusedNeverCommitted() throws {
        let t = try TestRelay()
        let store = t.relay.store
        let m1 = try PushSimulator(relay: t.relay, name: "m1")
        let c = chunk(3)
        try m1.send([PushSimulator.blob(c)])
        try store.flush()
        #expect(try t.relay.missing(machine: m1.machine, [PushSimulator.blob(c).id]).isEmpty)
        try store.index.backdate(by: 2 * Self.day)
        #expect(try GarbageCollector(store: store).run().deadBlobs == 1)
        let e = #expect(throws: HTTPFailure.self) {
            let folder = PushSimulator.blob(Tree(nodes: [PushSimulator.file("f", [c])]).encode(), kind: .tree)
            let root = PushSimulator.blob(
                Tree(nodes: [Node(name: Array("d".utf8), type: .directory, subtree: folder.id)]).encode(), kind: .tree)
            try m1.send([folder, root])
            let point = RecoveryPoint(
                machine: "m1", hostname: "h", paths: ["/"], startedAt: Date(), finishedAt: Date(), rootTree: root.id, parent: nil,
                summary: BackupSummary())
            _ = try t.relay.commit(machine: m1.machine, name: "m1", point: point)
        }
        #expect(e?.code == "conflict")
        #expect(try store.index.points().isEmpty)
        // The client runs the backup again: asked again, the chunk is missing, is sent, and the point lands.
        let info = try m1.push(new: ["f": [c]])
        #expect(try PushSimulator.restore(info, from: store) == ["f": c])
    }

    /// Three machines push six points each while gc runs in a loop. Each round first leaves fresh garbage (a
    /// dead push's chunks, backdated two days), publishes it as "bait", lets each machine start its next push
    /// (a semaphore, so the two overlap however the threads are scheduled), forgets every point but each
    /// machine's newest (retention), and runs gc. Each push relies on the current bait (asked for: told present,
    /// or in `machine` scope sent again and found stored) while that round's gc plans to delete it, and keeps its
    /// parent's files without asking. Every push lands at its first attempt, and every point restores exactly.
    @Test(arguments: [DedupScope.relay, .machine])
    func pushesOfSeveralMachinesBesideAGCLoopAllLandAndRestore(scope: DedupScope) throws {
        var configuration = RelayConfiguration()
        configuration.dedupScope = scope
        let t = try TestRelay(configuration: configuration)
        let store = t.relay.store
        let relay = t.relay
        let machines = try ["m1", "m2", "m3"].map { try PushSimulator(relay: relay, name: $0) }
        let shared = SharedState()
        let pushes = 6
        let roundStarted = machines.map { _ in DispatchSemaphore(value: 0) }
        let group = DispatchGroup()
        for (i, m) in machines.enumerated() {
            DispatchQueue.global().async(group: group) {
                var parent: RecoveryPointInfo?
                var content: [String: [UInt8]] = [:]
                for k in 0..<pushes {
                    roundStarted[i].wait()
                    let bait = shared.state.withLock { $0.bait }
                    let seed = UInt64(100 * i + k)
                    let files = [
                        "\(m.name)-\(k)-new": [chunk(seed), chunk(seed + 50)],
                        "\(m.name)-\(k)-bait": bait.isEmpty ? [chunk(seed + 70)] : (0..<3).map { bait[(i + $0 * 2) % bait.count] },
                    ]
                    do {
                        let kept = try parent.map { try PushSimulator.files(of: $0, in: store) } ?? []
                        let info = try m.push(new: files, kept: kept, parent: parent?.id)
                        for (name, plains) in files { content[name] = plains.flatMap { $0 } }
                        parent = info
                        let snapshot = content
                        shared.state.withLock { $0.expected[info.id] = snapshot }
                    } catch {
                        shared.state.withLock { $0.failures.append("\(m.name) push \(k): \(error)") }
                        break
                    }
                }
                shared.state.withLock { $0.pushesDone += 1 }
            }
        }
        let ghost = try PushSimulator(relay: relay, name: "ghost")
        DispatchQueue.global().async(group: group) {
            // Whatever happens here, no push is left waiting for a round.
            defer { for s in roundStarted { for _ in 0..<pushes { s.signal() } } }
            for round in 0..<200 {
                if shared.state.withLock({ $0.pushesDone == machines.count }) && round >= 3 { break }
                do {
                    // A push that died two days ago: its chunks, and they are the next pushes' bait.
                    let plains = (0..<6).map { chunk(50_000 + UInt64(round * 6 + $0)) }
                    let garbage = plains.map { PushSimulator.blob($0) }
                    try ghost.send(garbage)
                    try store.flush()
                    try store.index.backdate(by: 2 * Self.day, blobs: garbage.map(\.id), forgets: false)
                    shared.state.withLock { $0.bait = plains }
                    for s in roundStarted { s.signal() }
                    for m in machines {
                        for old in try store.index.points(machine: m.name).dropLast() { try store.forget(old.id) }
                    }
                    let r = try GarbageCollector(store: store).run()
                    shared.state.withLock {
                        $0.deleted += r.deadBlobs; $0.gcRounds += 1
                    }
                } catch {
                    shared.state.withLock { $0.failures.append("gc round \(round): \(error)") }
                    break
                }
            }
        }
        group.wait()
        let result = shared.state.withLock { s in (s.expected, s.failures, s.deleted, s.gcRounds) }
        #expect(result.3 < 200, "the gc loop ended with the pushes")
        #expect(result.1 == [], "no push refused, no gc failed")
        #expect(result.0.count == machines.count * pushes)
        #expect(result.2 > 0 && result.3 >= 3, "gc deleted garbage while the machines pushed")
        for info in try store.index.points() {
            let want = try #require(result.0[info.id])
            #expect(try PushSimulator.restore(info, from: store) == want, "point \(info.id.shortHex) of \(info.point.machine)")
        }
        #expect(try store.index.points().count >= machines.count)
        #expect(try StoreChecker(store: store, readData: true).run().isClean)
    }
}

/// What the push threads and the gc thread of the concurrency test report.
private final class SharedState: Sendable {
    struct Values {
        var expected: [BlobID: [String: [UInt8]]] = [:]
        var failures: [String] = []
        var pushesDone = 0
        var deleted = 0
        var gcRounds = 0
        var bait: [[UInt8]] = []
    }
    let state = Mutex(Values())
}
