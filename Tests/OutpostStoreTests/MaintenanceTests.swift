import Foundation
import OutpostArchive
import OutpostCore
import OutpostStore
import OutpostTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct MaintenanceTests {
    @Test func checkIsCleanAfterBackups() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/a", pseudoRandom(200_000, seed: 1))
        _ = try await backup(store, [s.sub("data")])
        let r = try StoreChecker(store: store, readData: true).run()
        #expect(r.isClean)
        #expect(r.points == 1)
        #expect(r.bytesRead > 0)
    }

    @Test func aFlippedByteIsNamedAndUnaffectedFilesStillRestore() async throws {
        let s = Scratch()
        let store = try makeStore(s, packTarget: 1 << 20)
        s.write("data/hurt", pseudoRandom(100_000, seed: 11))
        s.write("data/fine", pseudoRandom(100_000, seed: 12))
        let p = try await backup(store, [s.sub("data")]).point
        let victim = chunkIDs(try node(store, p, s.sub("data/hurt")))[0]
        let loc = try #require(try store.index.location(of: victim))
        let packPath = store.layout.packPath(loc.packName)
        let fd = open(packPath, O_RDWR)
        var byte: UInt8 = 0
        pread(fd, &byte, 1, off_t(loc.offset + 10))
        byte ^= 0xff
        pwrite(fd, &byte, 1, off_t(loc.offset + 10))
        close(fd)

        let quick = try StoreChecker(store: store, readData: false).run()
        #expect(quick.isClean, "without --read-data the structure is still intact")
        let r = try StoreChecker(store: store, readData: true).run()
        #expect(!r.isClean)
        #expect(r.damage.contains { $0.contains(loc.packName) && $0.contains(victim.shortHex) })
        #expect(r.damage.contains { $0.contains("recovery point \(p.id.shortHex)") && $0.contains("/hurt") })
        #expect(r.affectedPoints == [p.id.hex])

        let target = s.sub("out")
        let fine = try await restore(store, p, to: target, include: [s.sub("data/fine")])
        #expect(fine.failures.isEmpty)
        #expect(FileManager.default.contents(atPath: restored(target, s.sub("data/fine"))) == Data(pseudoRandom(100_000, seed: 12)))
        let hurt = try await restore(store, p, to: s.sub("out2"), include: [s.sub("data/hurt")])
        #expect(hurt.failures.count == 1)
        #expect(hurt.failures.first?.reason.contains("damaged") == true)
        // Restored together (small files of one folder share one fetch), the damage still costs only its file.
        let all = try await restore(store, p, to: s.sub("out3"))
        #expect(all.failures.map(\.path).count == 1 && all.failures.first?.path.hasSuffix("hurt") == true, "\(all.failures)")
        #expect(FileManager.default.contents(atPath: restored(s.sub("out3"), s.sub("data/fine"))) == Data(pseudoRandom(100_000, seed: 12)))
    }

    @Test func aTruncatedPackIsNamed() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/a", pseudoRandom(100_000, seed: 2))
        let p = try await backup(store, [s.sub("data")]).point
        let pack = try #require(try store.index.packs().first)
        truncate(store.layout.packPath(pack.name), off_t(pack.size / 2))
        let r = try StoreChecker(store: store, readData: false).run()
        #expect(r.damage.contains { $0.contains(pack.name) && $0.contains("index says \(pack.size)") })
        #expect(r.affectedPoints == [p.id.hex])
    }

    @Test func gcFreesForgottenDataAndKeepsWhatPointsNeed() async throws {
        let s = Scratch()
        let store = try makeStore(s, packTarget: 128 << 10)
        s.write("data/old", pseudoRandom(300_000, seed: 21))
        s.write("data/kept", pseudoRandom(300_000, seed: 22))
        let first = try await backup(store, [s.sub("data")]).point
        unlink(s.sub("data/old"))
        s.write("data/new", pseudoRandom(300_000, seed: 23))
        let second = try await backup(store, [s.sub("data")]).point
        try store.forget(first.id)
        let before = try store.index.totals()
        // Two days on: the forgotten data is older than gc's grace (24 h).
        let report = try GarbageCollector(store: store, now: Date().addingTimeInterval(2 * 86400)).run()
        #expect(report.deadBlobs > 0)
        #expect(report.bytesFreed > 250_000)
        let after = try store.index.totals()
        #expect(after.rawBytes < before.rawBytes - 250_000)
        #expect(try StoreChecker(store: store, readData: true).run().isClean)
        let target = s.sub("out")
        _ = try await restore(store, second, to: target)
        #expect(differences(s.sub("data"), restored(target, s.sub("data"))) == [])
    }

    @Test func gcRemovesWhatAnInterruptedJobLeft() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/a", [1, 2, 3])
        _ = try await backup(store, [s.sub("data")])
        // A job that sealed a pack and died before committing its recovery point.
        let orphan = try store.saveBlob(kind: .data, plaintext: pseudoRandom(20_000, seed: 9))
        try store.flush()
        #expect(try store.missing([orphan]).isEmpty)
        let report = try GarbageCollector(store: store, now: Date().addingTimeInterval(2 * 86400)).run()
        #expect(report.deadBlobs == 1)
        #expect(try store.missing([orphan]) == [orphan])
        #expect(try StoreChecker(store: store, readData: true).run().isClean)
    }

    @Test func gcLeavesYoungPacksForAResumingPush() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let orphan = try store.saveBlob(kind: .data, plaintext: pseudoRandom(20_000, seed: 10))
        try store.flush()
        let young = try GarbageCollector(store: store, grace: 3600).run()
        #expect(young.deadBlobs == 0)
        #expect(young.packsInGrace == 1)
        #expect(try store.missing([orphan]).isEmpty, "a resuming push finds it")
        let later = try GarbageCollector(store: store, grace: 3600, now: Date().addingTimeInterval(7200)).run()
        #expect(later.deadBlobs == 1)
    }

    @Test func theIndexIsRebuiltFromThePacksAlone() async throws {
        let s = Scratch()
        do {
            let store = try makeStore(s, packTarget: 64 << 10)
            s.write("data/a", pseudoRandom(300_000, seed: 31))
            s.write("data/b/c", pseudoRandom(10_000, seed: 32))
            _ = try await backup(store, [s.sub("data")])
            _ = try await backup(store, machine: "m2", [s.sub("data/b")])
        }
        for suffix in ["", "-wal", "-shm"] { unlink(s.sub("store/index.sqlite") + suffix) }
        let store = try Store.open(at: s.sub("store"), lock: .exclusive, purpose: "test")
        #expect(try store.index.points().isEmpty)
        let r = try IndexRebuilder(store: store).run()
        #expect(r.points == 2)
        #expect(r.problems.isEmpty)
        #expect(Set(try store.index.machines()) == ["m1", "m2"])
        #expect(try StoreChecker(store: store, readData: true).run().isClean)
        let p = try store.resolvePoint("latest", machine: "m1")
        _ = try await restore(store, p, to: s.sub("out"))
        #expect(differences(s.sub("data"), restored(s.sub("out"), s.sub("data"))) == [])
    }

    static let canMount: Bool = {
        let probe = NSTemporaryDirectory() + "/outpost-mount-probe-\(getpid())"
        mkdir(probe, 0o700)
        defer { rmdir(probe) }
        guard mount("tmpfs", probe, "tmpfs", 0, "size=1m") == 0 else { return false }
        umount(probe)
        return true
    }()

    @Test(.enabled(if: canMount, "needs root to mount a small tmpfs"))
    func aFullDiskFailsCleanlyAndTheNextJobWorks() async throws {
        let s = Scratch()
        let small = s.sub("small")
        mkdir(small, 0o700)
        #expect(mount("tmpfs", small, "tmpfs", 0, "size=3m") == 0)
        defer { umount(small) }
        let config = StoreConfiguration(
            id: "full", createdAt: Date(), chunker: ChunkerParameters(minSize: 4096, averageSize: 16384, maxSize: 65536),
            packTargetSize: 256 << 10)
        let storePath = small + "/store"
        s.write("data/ok", pseudoRandom(100_000, seed: 41))
        let good: RecoveryPointInfo
        do {
            let store = try Store.initialize(at: storePath, config: config)
            good = try await backup(store, [s.sub("data")]).point
            s.write("data/huge", pseudoRandom(6_000_000, seed: 42))
            let e = await #expect(throws: StoreError.self) { try await backup(store, [s.sub("data")]) }
            #expect(e?.code == .diskFull)
            #expect(e?.message.contains("is full") == true)
            store.discardOpenPack()
            #expect(try store.index.points().map(\.id) == [good.id], "no recovery point is committed")
            #expect(try StoreChecker(store: store, readData: true).run().isClean)
        }
        // The operator frees space (here: gc drops what the failed job sealed) and the next job works.
        unlink(s.sub("data/huge"))
        do {
            let exclusive = try Store.open(at: storePath, lock: .exclusive, purpose: "gc")
            _ = try GarbageCollector(store: exclusive, grace: 0).run()
        }
        let store = try Store.open(at: storePath, purpose: "backup")
        s.write("data/more", pseudoRandom(50_000, seed: 43))
        let next = try await backup(store, [s.sub("data")])
        #expect(next.failures.isEmpty)
        _ = try await restore(store, next.point, to: s.sub("out"))
        #expect(differences(s.sub("data"), restored(s.sub("out"), s.sub("data"))) == [])
    }
}
