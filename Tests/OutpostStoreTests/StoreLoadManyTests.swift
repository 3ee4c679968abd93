import Foundation
import OutpostCore
import OutpostStore
import OutpostTestSupport
import Testing

/// A restore batch's blobs, looked up in one index read (`Store.loadMany`, `LocalRepository.loadMany`).
@Suite struct StoreLoadManyTests {
    /// A store with `plains` saved over several packs (small ones, compressed where it pays), flushed.
    func storeHolding(_ plains: [[UInt8]], in s: Scratch) throws -> (Store, [BlobID]) {
        let store = try makeStore(s, packTarget: 8 << 10)
        let c = ZstdCompressor()
        let blobs = plains.map { p in p.withUnsafeBytes { PreparedBlob.make(kind: .data, plaintext: $0, compressor: c) } }
        for b in blobs { try store.save([b]) }
        try store.flush()
        return (store, blobs.map(\.id))
    }

    var plains: [[UInt8]] {
        (0..<4).map { pseudoRandom(5_000 + $0, seed: UInt64($0)) } + [[UInt8](repeating: 3, count: 20_000)]
    }

    @Test func plaintextsComeInTheOrderAskedARepeatIncluded() async throws {
        let s = Scratch()
        let plains = plains
        let (store, ids) = try storeHolding(plains, in: s)
        #expect(try store.index.packs().count >= 2, "the blobs are spread over packs")
        let order = [3, 0, 4, 0, 2]
        #expect(try store.loadMany(order.map { ids[$0] }) == order.map { plains[$0] })
        #expect(try store.loadMany([]).isEmpty)
        let repo = LocalRepository(store: store)
        #expect(try await repo.loadMany(order.map { ids[$0] }) == order.map { plains[$0] })
    }

    @Test func aMissingBlobThrowsNotFound() async throws {
        let s = Scratch()
        let (store, ids) = try storeHolding(plains, in: s)
        let absent = BlobID.hash([9, 9, 9])
        let e = #expect(throws: StoreError.self) { try store.loadMany([ids[0], absent, ids[1]]) }
        #expect(e?.code == .notFound)
        #expect(e?.message.contains(absent.shortHex) == true, "the message names the blob")
        #expect(e?.message.contains("outpost check") == true, "and what to do")
        let repo = LocalRepository(store: store)
        let viaRepo = await #expect(throws: StoreError.self) { try await repo.loadMany([absent]) }
        #expect(viaRepo?.code == .notFound)
    }
}
