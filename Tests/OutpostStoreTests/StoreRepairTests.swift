import Foundation
import OutpostArchive
import OutpostCore
import OutpostTestSupport
import Testing

@testable import OutpostStore

#if canImport(Glibc)
    import Glibc
#endif

/// `relay check --repair`'s store side: damaged packs mended from a second copy and quarantined, crash-safely.
@Suite struct StoreRepairTests {
    /// A store with one point of two files, every blob kept aside as the "vault", and one byte of a chunk of
    /// `hurt` flipped in its pack.
    struct Damaged {
        let store: Store
        let point: RecoveryPointInfo
        let pack: String
        let vault: [BlobID: PreparedBlob]
        let data: String
    }

    func damaged(_ s: Scratch) async throws -> Damaged {
        let store = try makeStore(s, packTarget: 1 << 20)
        s.write("data/hurt", pseudoRandom(150_000, seed: 21))
        s.write("data/fine", pseudoRandom(150_000, seed: 22))
        let p = try await backup(store, [s.sub("data")]).point
        var vault: [BlobID: PreparedBlob] = [:]
        for b in try store.index.allBlobs() { vault[b.id] = try store.loadStored(b.id) }
        let victim = chunkIDs(try node(store, p, s.sub("data/hurt")))[1]
        let loc = try #require(try store.index.location(of: victim))
        let fd = open(store.layout.packPath(loc.packName), O_RDWR)
        var byte: UInt8 = 0
        pread(fd, &byte, 1, off_t(loc.offset + 20))
        byte ^= 0x5a
        pwrite(fd, &byte, 1, off_t(loc.offset + 20))
        close(fd)
        return Damaged(store: store, point: p, pack: loc.packName, vault: vault, data: s.sub("data"))
    }

    func repairer(_ d: Damaged, stopAfter: StoreRepairer.Step? = nil, lose: Set<BlobID> = []) -> StoreRepairer {
        let vault = d.vault
        var r = StoreRepairer(store: d.store) { id in lose.contains(id) ? nil : vault[id] }
        r.stopAfter = stopAfter
        return r
    }

    /// Everything the point needs reads back intact, and the damaged pack is in quarantine, not in `packs/`.
    func expectRepaired(_ s: Scratch, _ d: Damaged, target: String) async throws {
        let check = try StoreChecker(store: d.store, readData: true).run()
        #expect(check.isClean, "\(check.damage)")
        // (A run killed before its commit leaves its new packs unindexed: gc's leftovers, as a killed gc's.)
        #expect(!check.notes.contains { $0.contains(d.pack) }, "\(check.notes)")
        #expect(!FileManager.default.fileExists(atPath: d.store.layout.packPath(d.pack)))
        #expect(FileManager.default.fileExists(atPath: d.store.layout.quarantinePath(d.pack + ".pack")), "kept aside, never deleted")
        #expect(try !d.store.index.packs().contains { $0.name == d.pack })
        let r = try await restore(d.store, d.point, to: s.sub(target))
        #expect(r.failures.isEmpty)
        #expect(differences(d.data, restored(s.sub(target), d.data)).isEmpty)
    }

    @Test func aFlippedByteIsFetchedBackAndThePackQuarantined() async throws {
        let s = Scratch()
        let d = try await damaged(s)
        let found = try StoreChecker(store: d.store, readData: true).run()
        #expect(found.damagedPacks.keys.sorted() == [d.pack])
        let (report, after) = try await repairer(d).run(found)
        #expect(after.isClean)
        #expect(report.unrepairable.isEmpty)
        let outcome = try #require(report.packs.first)
        #expect(outcome.pack == d.pack && outcome.fetched == 1 && outcome.copied > 0 && !outcome.keptInPlace)
        #expect(outcome.quarantinedAt == d.store.layout.quarantinePath(d.pack + ".pack"))
        var st = stat()
        stat(d.store.layout.quarantineDirectory, &st)
        #expect(st.st_mode & 0o777 == 0o700)
        try await expectRepaired(s, d, target: "out")
    }

    /// Killed after each step of a pack's quarantine, the store stays consistent (nothing indexed points at a
    /// missing file, nothing is lost) and the next run finishes the work.
    @Test(arguments: [StoreRepairer.Step.copied, .linked, .committed])
    func aRepairKilledMidwayIsFinishedByTheNext(_ step: StoreRepairer.Step) async throws {
        let s = Scratch()
        let d = try await damaged(s)
        let found = try StoreChecker(store: d.store, readData: true).run()
        _ = try await repairer(d, stopAfter: step).run(found)

        let structure = try StoreChecker(store: d.store, readData: false).run()
        #expect(structure.isClean, "every index row names an existing pack: \(structure.damage)")
        if step == .committed {
            #expect(structure.notes.contains { $0.contains(d.pack) && $0.contains("interrupted repair") })
        }
        #expect(
            FileManager.default.fileExists(atPath: d.store.layout.packPath(d.pack))
                || FileManager.default.fileExists(atPath: d.store.layout.quarantinePath(d.pack + ".pack")), "the damaged pack is not lost")

        let again = try StoreChecker(store: d.store, readData: true).run()
        let (report, after) = try await repairer(d).run(again)
        #expect(after.isClean && report.unrepairable.isEmpty, "\(after.damage) \(report.unrepairable)")
        #expect(report.finishedQuarantines == (step == .committed ? [d.pack] : []))
        let files = try FileManager.default.contentsOfDirectory(atPath: d.store.layout.quarantineDirectory)
        #expect(files == [d.pack + ".pack"], "one quarantined file, the interrupted run's link reused")
        try await expectRepaired(s, d, target: "out-\(step)")
    }

    /// A blob the second copy lacks leaves its pack in place (still holding it) and is named; what could be had
    /// is mended.
    @Test func aBlobTheVaultLacksKeepsItsPackInPlace() async throws {
        let s = Scratch()
        let d = try await damaged(s)
        let found = try StoreChecker(store: d.store, readData: true).run()
        let victim = chunkIDs(try node(d.store, d.point, s.sub("data/hurt")))[1]
        let (report, _) = try await repairer(d, lose: [victim]).run(found)
        #expect(report.unrepairable.map(\.blob) == [victim.hex])
        #expect(report.unrepairable.first?.reason.contains("does not hold it") == true)
        #expect(report.packs.first?.keptInPlace == true)
        #expect(FileManager.default.fileExists(atPath: d.store.layout.packPath(d.pack)))
        #expect(!FileManager.default.fileExists(atPath: d.store.layout.quarantinePath(d.pack + ".pack")))
        #expect(try !StoreChecker(store: d.store, readData: true).run().isClean, "the damage is still reported")
    }

    /// A lost pack file: every blob it held comes back from the second copy; there is nothing to quarantine.
    @Test func aMissingPackIsRefetchedWhole() async throws {
        let s = Scratch()
        let d = try await damaged(s)
        unlink(d.store.layout.packPath(d.pack))
        let found = try StoreChecker(store: d.store, readData: false).run()
        #expect(found.damagedPacks[d.pack]?.contains("missing") == true)
        let (report, after) = try await repairer(d).run(found)
        #expect(after.isClean && report.unrepairable.isEmpty)
        #expect(report.packs.first?.quarantinedAt == nil && report.packs.first?.copied == 0)
        #expect(try StoreChecker(store: d.store, readData: true).run().isClean)
        let r = try await restore(d.store, d.point, to: s.sub("out"))
        #expect(r.failures.isEmpty)
        #expect(differences(d.data, restored(s.sub("out"), d.data)).isEmpty)
    }
}
