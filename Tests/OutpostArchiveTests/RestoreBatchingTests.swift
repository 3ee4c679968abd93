import Foundation
import OutpostCore
import OutpostStore
import OutpostTestSupport
import Synchronization
import Testing

@testable import OutpostArchive

/// Small files of many folders restored in shared batches (`SmallFileQueue`), folders finished when their last
/// file is written (`OpenFolder`), and trees fetched ahead of the walk (`TreePrefetch`). The time limit catches
/// a hang; it is generous because the end-to-end suites, run beside these, hold the cooperative pool's threads
/// while their child processes run (a 1-minute limit was once exceeded that way under a loaded machine).
@Suite(.timeLimit(.minutes(5))) struct RestoreBatchingTests {
    /// Counts the repository requests of a restore (each `loadMany` is one request to a relay).
    final class FetchCounter: BlobRepository {
        let inner: any BlobRepository
        let requests = Atomic<Int>(0)
        init(_ inner: any BlobRepository) { self.inner = inner }
        var chunkerParameters: ChunkerParameters { inner.chunkerParameters }
        var compressionLevel: Int32 { inner.compressionLevel }
        func missing(_ ids: [BlobID]) async throws -> Set<BlobID> { try await inner.missing(ids) }
        func save(_ blobs: [PreparedBlob]) async throws -> SaveStats { try await inner.save(blobs) }
        func load(_ id: BlobID, kind: BlobKind) async throws -> [UInt8] { try await loadMany([id])[0] }
        func loadMany(_ ids: [BlobID]) async throws -> [[UInt8]] {
            requests.add(1, ordering: .relaxed)
            return try await inner.loadMany(ids)
        }
        func latestPoint(machine: String) async throws -> RecoveryPointInfo? { try await inner.latestPoint(machine: machine) }
        func commit(_ point: RecoveryPoint) async throws -> RecoveryPointInfo { try await inner.commit(point) }
    }

    /// 120 folders in three levels, 3 small files each: a restore takes far fewer requests than folders, and
    /// gives back every file, mode and folder time.
    @Test func manySmallFoldersShareRequestsAndKeepTheirTimes() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        for a in 0..<4 {
            for b in 0..<5 {
                for c in 0..<6 {
                    for f in 0..<3 {
                        s.write("data/a\(a)/b\(b)/c\(c)/f\(f)", pseudoRandom(200 + f, seed: UInt64(a * 1000 + b * 100 + c * 10 + f)))
                    }
                }
            }
        }
        // Folder times set last in the source, as the restore must reproduce them.
        for a in 0..<4 { utimes(s.sub("data/a\(a)/b0"), [timeval(tv_sec: 1_000_000 + a, tv_usec: 0), timeval(tv_sec: 1_000_000 + a, tv_usec: 0)]) }
        let p = try await backup(store, [s.sub("data")]).point
        let counter = FetchCounter(LocalRepository(store: store))
        let target = s.sub("out")
        let result = try await Restorer(repository: counter, point: p, options: RestoreOptions(target: target, workers: 3)).run()
        #expect(result.failures.isEmpty)
        #expect(result.files == 360)
        #expect(differences(s.sub("data"), restored(target, s.sub("data"))) == [])
        let requests = counter.requests.load(ordering: .relaxed)
        // 145 folders: one request per folder for trees and one for files would be about 270.
        #expect(requests <= 40, "\(requests) requests")
    }

    /// A folder is finished (and closed) only after its last file: releases in any order run the finish once.
    @Test func aFolderFinishesOnceAfterItsLastReference() {
        let finished = Atomic<Int>(0)
        let applied = Atomic<Bool>(false)
        let folder = OpenFolder(fd: -1, isNew: true) { apply in
            finished.add(1, ordering: .relaxed)
            applied.store(apply, ordering: .relaxed)
        }
        folder.retain()
        folder.retain()
        folder.release()
        folder.release()
        let early = finished.load(ordering: .relaxed)
        #expect(early == 0)
        folder.release()
        let count = finished.load(ordering: .relaxed), apply = applied.load(ordering: .relaxed)
        #expect(count == 1)
        #expect(apply)

        let failed = OpenFolder(fd: -1, isNew: true) { apply in applied.store(apply, ordering: .relaxed) }
        failed.retain()
        failed.release(failed: true)
        failed.release()
        let appliedAfterFailure = applied.load(ordering: .relaxed)
        #expect(!appliedAfterFailure, "a folder whose walk failed gets no metadata")
    }
}
