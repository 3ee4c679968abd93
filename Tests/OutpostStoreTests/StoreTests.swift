import Foundation
import OutpostArchive
import OutpostCore
import OutpostStore
import OutpostTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct StoreTests {
    @Test func initThenOpen() throws {
        let s = Scratch()
        _ = try makeStore(s)
        let reopened = try Store.open(at: s.sub("store"), purpose: "test")
        #expect(reopened.config.chunker.averageSize == 16384)
        #expect(try reopened.index.points().isEmpty)
    }

    /// More packs than the reader cache keeps open, read from many threads at once: every read succeeds (no
    /// reader may find its descriptor closed by another).
    @Test func readsFromManyMorePacksThanTheCacheHoldsAtOnce() async throws {
        let s = Scratch()
        let store = try makeStore(s, packTarget: 1)
        var ids: [BlobID] = []
        for i in 0..<300 {
            let plain = [UInt8(i & 0xff), UInt8(i >> 8)] + (0..<1998).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }
            let blob = plain.withUnsafeBytes { PreparedBlob.make(kind: .data, plaintext: $0, compressor: nil) }
            _ = try store.save([blob])
            ids.append(blob.id)
        }
        try store.flush()
        #expect(try store.index.packs().count >= 300)
        let reopened = try Store.open(at: s.sub("store"), purpose: "test")
        let all = ids
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<8 {
                group.addTask {
                    for round in 0..<3 {
                        for id in all.shuffled() where abs(id.hashValue &+ round) % 8 == lane || round == 2 {
                            let got = try reopened.loadStored(id)?.stored.count
                            #expect(got == 2000)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func openRefusesADirectoryThatIsNotAStore() throws {
        let s = Scratch()
        s.write("notastore/file", [1, 2, 3])
        let e = #expect(throws: StoreError.self) { try Store.open(at: s.sub("notastore"), purpose: "test") }
        #expect(e?.code == .notAStore)
        #expect(e?.exitCode == .notAStore)
        let missing = #expect(throws: StoreError.self) { try Store.open(at: s.sub("nothing"), purpose: "test") }
        #expect(missing?.message.contains("outpost store init") == true)
    }

    @Test func openRefusesANewerFormatVersion() throws {
        let s = Scratch()
        _ = try makeStore(s)
        let configPath = s.sub("store/config")
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as! [String: Any]
        json["version"] = 99
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: configPath))
        let e = #expect(throws: StoreError.self) { try Store.open(at: s.sub("store"), purpose: "test") }
        #expect(e?.code == .unsupportedVersion)
        #expect(e?.message.contains("upgrade outpost") == true)
    }

    @Test func initRefusesANonEmptyDirectoryOrAnExistingStore() throws {
        let s = Scratch()
        s.write("busy/file", [1])
        #expect(throws: StoreError.self) { try Store.initialize(at: s.sub("busy")) }
        _ = try makeStore(s)
        let e = #expect(throws: StoreError.self) { try Store.initialize(at: s.sub("store")) }
        #expect(e?.message.contains("already holds a store") == true)
    }

    @Test func savedBlobsAreDedupedDurableAndVerifiedOnLoad() throws {
        let s = Scratch()
        let store = try makeStore(s, packTarget: 64 << 10)
        let c = ZstdCompressor()
        let datas = (0..<20).map { pseudoRandom(10_000, seed: UInt64($0)) } + [[UInt8](repeating: 7, count: 50_000)]
        let blobs = datas.map { d in d.withUnsafeBytes { PreparedBlob.make(kind: .data, plaintext: $0, compressor: c) } }
        #expect(try store.missing(blobs.map(\.id)).count == blobs.count)
        let first = try store.save(blobs)
        #expect(first.blobs == blobs.count)
        let again = try store.save(blobs)
        #expect(again.blobs == 0)
        try store.flush()
        #expect(try store.index.packs().count >= 3, "a 64 KiB pack target must seal several packs")
        let reopened = try Store.open(at: s.sub("store"), purpose: "test")
        #expect(try reopened.missing(blobs.map(\.id)).isEmpty)
        for (d, b) in zip(datas, blobs) { #expect(try reopened.load(b.id) == d) }
        #expect(blobs.last?.compression == .zstd)
        #expect(blobs.first?.compression == BlobCompression.none, "random data is kept raw")
    }

    /// Full packs are sealed outside the writer's lock while other savers go on appending: after they finish and
    /// a flush, every blob any of them saved is indexed in a sealed pack and loads back.
    @Test func concurrentSaversSealingOutsideTheLockLoseNothing() async throws {
        let s = Scratch()
        let store = try makeStore(s, packTarget: 32 << 10)
        let all: [[PreparedBlob]] = (0..<6).map { lane in
            (0..<40).map { i in
                pseudoRandom(3000, seed: UInt64(lane * 1000 + i)).withUnsafeBytes { PreparedBlob.make(kind: .data, plaintext: $0, compressor: nil) }
            }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in all {
                group.addTask { for b in lane { try store.save([b]) } }
            }
            try await group.waitForAll()
        }
        try store.flush()
        let ids = all.flatMap { $0.map(\.id) }
        #expect(try store.index.packs().count >= 6, "a 32 KiB target must have sealed several packs")
        let reopened = try Store.open(at: s.sub("store"), purpose: "test")
        #expect(try reopened.missing(ids).isEmpty, "every saved blob is indexed after flush")
        for b in all.flatMap({ $0 }) { #expect(try reopened.load(b.id).count == 3000) }
    }

    @Test func anAbandonedOpenPackLeavesNothingIndexed() throws {
        let s = Scratch()
        let store = try makeStore(s)
        let blob = pseudoRandom(5000, seed: 1).withUnsafeBytes { PreparedBlob.make(kind: .data, plaintext: $0, compressor: nil) }
        try store.save([blob])
        store.discardOpenPack()
        #expect(try store.missing([blob.id]) == [blob.id])
        #expect(try store.index.packs().isEmpty)
    }

    @Test func gcNeedsTheStoreToItself() throws {
        let s = Scratch()
        let store = try makeStore(s)
        let e = withExtendedLifetime(store) {
            #expect(throws: StoreError.self) { try Store.open(at: s.sub("store"), lock: .exclusive, purpose: "`outpost store gc`") }
        }
        #expect(e?.code == .locked)
        #expect(e?.message.contains("outpost store gc") == true)
    }

    @Test func pointsResolveByLatestAndUniquePrefix() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/a", [1, 2, 3])
        let p1 = try await backup(store, [s.sub("data")]).point
        s.write("data/b", [4])
        let p2 = try await backup(store, [s.sub("data")]).point
        #expect(try store.resolvePoint("latest", machine: "m1").id == p2.id)
        #expect(try store.resolvePoint(String(p1.id.hex.prefix(8)), machine: nil).id == p1.id)
        #expect(throws: StoreError.self) { try store.resolvePoint("latest", machine: "nobody") }
        let bad = #expect(throws: StoreError.self) { try store.resolvePoint("xyz", machine: nil) }
        #expect(bad?.code == .invalid)
        #expect(throws: StoreError.self) { try store.resolvePoint("0000000000", machine: nil) }
        #expect(p2.point.parent == p1.id.hex)
    }
}
