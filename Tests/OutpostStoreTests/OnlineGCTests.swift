import Foundation
import OutpostArchive
import OutpostCore
import OutpostTestSupport
import Testing

@testable import OutpostStore

#if canImport(Glibc)
    import Glibc
#endif

/// gc beside running jobs (docs/format.md §13), with an injected clock: what was touched after the cutoff
/// stays, a gc killed between its index commit and its file deletions is finished by the next, readers follow
/// blobs a repack moved, and a local commit notices a gc that deleted what it needs.
@Suite struct OnlineGCTests {
    static let day: TimeInterval = 86400

    func saveData(_ store: Store, seed: UInt64, count: Int = 20_000) throws -> (BlobID, [UInt8]) {
        let plain = pseudoRandom(count, seed: seed)
        return (try store.saveBlob(kind: .data, plaintext: plain), plain)
    }

    /// A root tree with one file made of `chunks`.
    func saveTree(_ store: Store, chunks: [BlobID], length: Int = 20_000) throws -> BlobID {
        let node = Node(name: Array("f".utf8), type: .file, size: UInt64(chunks.count * length), extents: chunks.map { .chunk($0, length: length) })
        return try store.saveBlob(kind: .tree, plaintext: Tree(nodes: [node]).encode())
    }

    func point(_ root: BlobID, machine: String = "m") -> RecoveryPoint {
        RecoveryPoint(
            machine: machine, hostname: "h", paths: ["/"], startedAt: Date(), finishedAt: Date(), rootTree: root, parent: nil,
            summary: BackupSummary())
    }

    @Test func aBlobTouchedAfterTheCutoffStaysAndAnOldUnreachableOneGoes() throws {
        let s = Scratch()
        let store = try makeStore(s)
        let (kept, keptPlain) = try saveData(store, seed: 1)
        let (old, _) = try saveData(store, seed: 2)
        try store.flush()
        let now = Date().addingTimeInterval(2 * Self.day)
        let gc = GarbageCollector(store: store, grace: Self.day, now: now)
        // A push is told `kept` is present after the cutoff (now − 1 day); nothing ever asked for `old`.
        #expect(try store.index.touch([kept], now: now.addingTimeInterval(-Self.day / 2)) == [kept])
        let r = try gc.run()
        #expect(r.deadBlobs == 1)
        #expect(r.packsRepacked == 1, "the pack held both: the live blob moved to a new pack")
        #expect(try store.index.location(of: old) == nil)
        #expect(try store.load(kept) == keptPlain)
        #expect(try StoreChecker(store: store, readData: true).run().isClean)
    }

    /// Simulated kill: the first run stops after its index commit, before deleting any file.
    @Test func aGCKilledBetweenItsIndexCommitAndItsDeletionsIsFinishedByTheNext() async throws {
        let s = Scratch()
        let store = try makeStore(s, packTarget: 64 << 10)
        s.write("data/a", pseudoRandom(300_000, seed: 3))
        let first = try await backup(store, [s.sub("data")]).point
        unlink(s.sub("data/a"))
        s.write("data/b", pseudoRandom(200_000, seed: 4))
        let second = try await backup(store, [s.sub("data")]).point
        try store.forget(first.id)
        let now = Date().addingTimeInterval(2 * Self.day)
        var killed = GarbageCollector(store: store, now: now)
        killed.stopBeforeDeletingFiles = true
        let partial = try killed.run()
        #expect(partial.deadBlobs > 0)
        let indexed = Set(try store.index.packs().map(\.name))
        let leftovers = try store.layout.packFilesOnDisk().filter { !indexed.contains($0) }
        #expect(!leftovers.isEmpty, "the old packs are out of the index, their files still there")
        _ = try await restore(store, second, to: s.sub("out1"))
        #expect(differences(s.sub("data"), restored(s.sub("out1"), s.sub("data"))) == [])

        let next = try GarbageCollector(store: store, now: now).run()
        #expect(next.unindexedPacksDeleted == leftovers.count)
        #expect(Set(try store.layout.packFilesOnDisk()) == Set(try store.index.packs().map(\.name)))
        #expect(try StoreChecker(store: store, readData: true).run().isClean)
        _ = try await restore(store, second, to: s.sub("out2"))
        #expect(differences(s.sub("data"), restored(s.sub("out2"), s.sub("data"))) == [])
    }

    /// A point forgotten within the grace keeps its data (a push that started before may build on it).
    @Test func aForgottenPointKeepsItsDataForTheGrace() throws {
        let s = Scratch()
        let store = try makeStore(s)
        let (chunk, _) = try saveData(store, seed: 5)
        let info = try store.commit(point(try saveTree(store, chunks: [chunk])))
        try store.forget(info.id)
        try store.index.backdate(by: 2 * Self.day, forgets: false)
        let within = try GarbageCollector(store: store).run()
        #expect(within.forgottenPointsKept == 1)
        #expect(try store.index.location(of: chunk) != nil)
        try store.index.backdate(by: 2 * Self.day)
        let after = try GarbageCollector(store: store).run()
        #expect(after.forgottenPointsKept == 0)
        #expect(try store.index.location(of: chunk) == nil)
    }

    /// A local job's chunk is deleted by a gc (the job outlived the grace); the job then writes its root tree
    /// (young, so safe from now on) and commits: the commit sees the gc counter moved, checks, and refuses.
    @Test func aLocalCommitChecksItsPointAgainAfterAGCDeletedSomething() throws {
        let s = Scratch()
        let job = try makeStore(s)
        let (chunk, _) = try saveData(job, seed: 6)
        let (other, _) = try saveData(job, seed: 7)
        try job.flush()
        try job.index.backdate(by: 2 * Self.day)
        let gcSide = try Store.open(at: s.sub("store"), purpose: "gc")
        #expect(try GarbageCollector(store: gcSide).run().deadBlobs == 2)
        let root = try saveTree(job, chunks: [chunk])
        let e = #expect(throws: StoreError.self) { try job.commit(point(root)) }
        #expect(e?.message.contains("chunk \(chunk.shortHex)") == true)
        #expect(try job.index.points().isEmpty, "nothing was committed")
        // A job opened after that gc (the counter as it is now) commits what it finds.
        let fresh = try Store.open(at: s.sub("store"), purpose: "backup")
        let (again, _) = try saveData(fresh, seed: 7)
        #expect(again == other)
        _ = try fresh.commit(point(try saveTree(fresh, chunks: [again])))
        #expect(try fresh.index.points().count == 1)
    }

    /// A reader holding a location from before a repack reads the blob from its new pack.
    @Test func aReaderFollowsABlobARepackMoved() throws {
        let s = Scratch()
        let store = try makeStore(s)
        let (live, plain) = try saveData(store, seed: 8)
        for seed in 9..<13 { _ = try saveData(store, seed: UInt64(seed)) }
        _ = try store.commit(point(try saveTree(store, chunks: [live])))
        let before = try #require(try store.index.location(of: live))
        #expect(try store.load(live, at: before) == plain)
        let r = try GarbageCollector(store: store, now: Date().addingTimeInterval(2 * Self.day)).run()
        #expect(r.packsRepacked == 1)
        #expect(access(store.layout.packPath(before.packName), F_OK) != 0, "the old pack is gone")
        #expect(try store.load(live, at: before) == plain)
        #expect(try store.loadStoredMany([live], at: [live: before]).first??.id == live)
    }

    /// Another process's gc deletes a pack this store has open: the descriptor goes when the next pack opens.
    @Test func theReaderCacheLetsGoOfPacksAnotherGCDeleted() throws {
        let s = Scratch()
        let writer = try makeStore(s, packTarget: 1)
        let (dead, _) = try saveData(writer, seed: 14)
        let (live, _) = try saveData(writer, seed: 15)
        _ = try writer.commit(point(try saveTree(writer, chunks: [live])))
        let reader = try Store.open(at: s.sub("store"), purpose: "restore")
        _ = try reader.load(dead)
        #expect(reader.readers.count == 1)
        #expect(try GarbageCollector(store: writer, now: Date().addingTimeInterval(2 * Self.day)).run().packsDeleted == 1)
        _ = try reader.load(live)
        #expect(reader.readers.count == 1, "the deleted pack's descriptor was dropped, the live one's opened")
    }

    @Test func aShortGraceNeedsTheExclusiveLock() throws {
        let s = Scratch()
        let store = try makeStore(s)
        let e = #expect(throws: StoreError.self) { try GarbageCollector(store: store, grace: 60).run() }
        #expect(e?.message.contains("exclusive lock") == true)
    }

    /// Files no index row names: a young one may be a pack being sealed, a flocked `tmp/` file a pack being
    /// written; both stay. Old and abandoned ones go.
    @Test func leftoverFilesGoOnlyWhenOldAndAbandoned() throws {
        let s = Scratch()
        let store = try makeStore(s)
        let (chunk, _) = try saveData(store, seed: 16)
        try store.flush()
        let pack = try #require(try store.index.location(of: chunk)).packName
        let copy = store.layout.packsRoot + "/ff/ff" + String(repeating: "0", count: 30) + ".pack"
        try FileIO.makeDirectory(store.layout.packsRoot + "/ff")
        try FileManager.default.copyItem(atPath: store.layout.packPath(pack), toPath: copy)
        let writing = try PackWriter(layout: store.layout)
        defer { writing.abandon() }
        let abandoned = s.write("store/tmp/" + String(repeating: "a", count: 32) + ".pack", [1, 2, 3])
        let old = timeval(tv_sec: time(nil) - 7200, tv_usec: 0)
        for p in [abandoned, store.layout.tmpDirectory + "/" + writing.name + ".pack"] { #expect(utimes(p, [old, old]) == 0) }
        let first = try GarbageCollector(store: store, grace: 3600).run()
        #expect(first.unindexedPacksDeleted == 0 && access(copy, F_OK) == 0, "a young unindexed pack may be sealing")
        #expect(first.temporaryFilesDeleted == 1)
        #expect(access(abandoned, F_OK) != 0)
        #expect(utimes(copy, [old, old]) == 0)
        let second = try GarbageCollector(store: store, grace: 3600).run()
        #expect(second.unindexedPacksDeleted == 1 && access(copy, F_OK) != 0)
        #expect(second.temporaryFilesDeleted == 0, "a pack being written is never deleted")
    }
}
