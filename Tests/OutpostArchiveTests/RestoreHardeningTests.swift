import COutpostSystem
import Foundation
import OutpostCore
import OutpostStore
import OutpostTestSupport
import Testing

@testable import OutpostArchive

#if canImport(Glibc)
    import Glibc
#endif

/// Restores of damaged or hostile recovery points, and restores that are interrupted (issue 8).
@Suite struct RestoreHardeningTests {
    /// A recovery point whose root tree holds `nodes`.
    func commit(_ store: Store, _ nodes: [Node]) throws -> RecoveryPointInfo {
        let root = try store.saveBlob(kind: .tree, plaintext: Tree(nodes: nodes).encode())
        let point = RecoveryPoint(
            machine: "m1", hostname: "h", paths: ["/"], startedAt: Date(), finishedAt: Date(),
            rootTree: root, parent: nil, summary: BackupSummary())
        return try store.commit(point)
    }

    /// Two holes of 2^63−1 bytes add up to 2^64−2: before the fix the restore trapped on the Int64 sum (SIGILL).
    /// The tree decoder now refuses a size past 2^63−1, so the restore ends with a clear error naming the file;
    /// `layoutChecksEverySum` covers the restorer's own checks behind it.
    @Test func extentsThatAddUpToMoreThanAFileCanHoldAreAClearError() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let huge = Node(name: Array("huge".utf8), type: .file, size: UInt64.max - 1, extents: [.hole(length: Int.max), .hole(length: Int.max)])
        let info = try commit(store, [huge])
        do {
            let r = try await restore(store, info, to: s.sub("out"))
            Issue.record("restored a damaged point: \(r.failures)")
        } catch {
            #expect("\(error)".contains("more than a file can hold"), "\(error)")
        }
    }

    @Test func layoutChecksEverySum() throws {
        let id = BlobID.hash([1, 2, 3])
        let ok = Node(name: [0x61], type: .file, size: 10, extents: [.hole(length: 4), .chunk(id, length: 6)])
        #expect(try FileWriter.layout(ok, path: "/a").map { [$0.1, Int64($0.2)] } == [[4, 6]])
        let tooBig = Node(name: [0x61], type: .file, size: UInt64(Int64.max) + 1, extents: [])
        #expect(throws: ArchiveError.self) { try FileWriter.layout(tooBig, path: "/a") }
        let mismatch = Node(name: [0x61], type: .file, size: 11, extents: [.hole(length: 4), .chunk(id, length: 6)])
        let e = #expect(throws: ArchiveError.self) { try FileWriter.layout(mismatch, path: "/a") }
        #expect(e?.code == .damaged)
        #expect(e?.exitCode == .corruptData)
    }
}

/// Special files (FIFOs, device nodes, symlinks) get their owner, mode and times without following a name that
/// someone swapped after it was created.
@Suite struct RestoreSpecialFileTests {
    func restore(
        _ store: Store, _ point: RecoveryPointInfo, to target: String,
        afterCreate: @escaping @Sendable ([[UInt8]]) -> Void
    ) async throws -> RestoreResult {
        var options = RestoreOptions(target: target, workers: 2)
        options.hooks.afterCreate = afterCreate
        return try await Restorer(repository: LocalRepository(store: store), point: point, options: options).run()
    }

    @Test func aSwappedNameIsNotFollowedWhenModeAndTimesAreSet() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let mtime: Int64 = 1_500_000_000_000_000_000
        let nodes = [
            Node(name: Array("pipe-to-link".utf8), type: .fifo, mode: 0o666, mtimeNanos: mtime),
            Node(name: Array("pipe-to-hardlink".utf8), type: .fifo, mode: 0o666, mtimeNanos: mtime),
            Node(name: Array("untouched".utf8), type: .fifo, mode: 0o640, mtimeNanos: mtime),
        ]
        let root = try store.saveBlob(kind: .tree, plaintext: Tree(nodes: nodes).encode())
        let info = try store.commit(
            RecoveryPoint(
                machine: "m1", hostname: "h", paths: ["/"], startedAt: Date(), finishedAt: Date(),
                rootTree: root, parent: nil, summary: BackupSummary()))
        // Files outside the target that an attacker wants changed: a regular file and a FIFO (same type as the entry).
        let secret = s.write("outside/secret", Array("keep".utf8), mode: 0o600)
        let otherPipe = s.sub("outside/pipe")
        #expect(mkfifo(otherPipe, 0o600) == 0)
        var before = stat(), beforePipe = stat()
        stat(secret, &before)
        stat(otherPipe, &beforePipe)
        let target = s.sub("out")
        let r = try await restore(store, info, to: target) { comps in
            let path = target + "/" + String(decoding: comps.last!, as: UTF8.self)
            if path.hasSuffix("/pipe-to-link") { unlink(path); symlink(secret, path) }
            if path.hasSuffix("/pipe-to-hardlink") { unlink(path); link(otherPipe, path) }
        }
        var after = stat(), afterPipe = stat()
        stat(secret, &after)
        stat(otherPipe, &afterPipe)
        #expect(after.st_mode & 0o7777 == 0o600, "the symlink's target keeps its mode")
        #expect(after.st_mtim.tv_sec == before.st_mtim.tv_sec)
        #expect(afterPipe.st_mode & 0o7777 == 0o600, "a hard link's other name keeps its mode")
        #expect(afterPipe.st_mtim.tv_sec == beforePipe.st_mtim.tv_sec)
        #expect(Set(r.failures.map(\.path)) == [target + "/pipe-to-link", target + "/pipe-to-hardlink"])
        #expect(r.failures.allSatisfy { $0.reason.contains("was replaced") })
        var ok = stat()
        #expect(lstat(target + "/untouched", &ok) == 0)
        #expect(ok.st_mode & 0o7777 == 0o640)
        #expect(Int64(ok.st_mtim.tv_sec) == mtime / 1_000_000_000)
    }

    @Test func symlinksAndFifosGetOwnerModeAndTimes() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let d = s.sub("special")
        mkdir(d, 0o755)
        symlink("nowhere", d + "/link")
        mkfifo(d + "/pipe", 0o604)
        var times = [timespec(tv_sec: 1_400_000_000, tv_nsec: 5), timespec(tv_sec: 1_400_000_000, tv_nsec: 5)]
        utimensat(AT_FDCWD, d + "/link", &times, AT_SYMLINK_NOFOLLOW)
        utimensat(AT_FDCWD, d + "/pipe", &times, 0)
        let p = try await backup(store, [d]).point
        let target = s.sub("out")
        let r = try await restore(store, p, to: target) { _ in }
        #expect(r.failures.isEmpty, "\(r.failures)")
        var st = stat()
        #expect(lstat(target + d + "/link", &st) == 0)
        #expect(st.st_mtim.tv_sec == 1_400_000_000 && st.st_mtim.tv_nsec == 5)
        #expect(lstat(target + d + "/pipe", &st) == 0)
        #expect(st.st_mode & 0o7777 == 0o604)
        #expect(st.st_mtim.tv_sec == 1_400_000_000 && st.st_mtim.tv_nsec == 5)
    }
}

/// A restore that fails or stops half-way leaves no partial file under a real name, and a re-run with `--skip`
/// finishes the job.
@Suite struct InterruptedRestoreTests {
    /// A repository whose loads of some chunks fail with a given error (a lost connection, a full disk).
    struct FailingRepository: BlobRepository {
        let inner: LocalRepository
        let failing: Set<BlobID>
        let error: any Error & Sendable
        var chunkerParameters: ChunkerParameters { inner.chunkerParameters }
        var compressionLevel: Int32 { inner.compressionLevel }
        func missing(_ ids: [BlobID]) async throws -> Set<BlobID> { try await inner.missing(ids) }
        func save(_ blobs: [PreparedBlob]) async throws -> SaveStats { try await inner.save(blobs) }
        func load(_ id: BlobID, kind: BlobKind) async throws -> [UInt8] {
            if failing.contains(id) { throw error }
            return try await inner.load(id, kind: kind)
        }
        func latestPoint(machine: String) async throws -> RecoveryPointInfo? { try await inner.latestPoint(machine: machine) }
        func commit(_ point: RecoveryPoint) async throws -> RecoveryPointInfo { try await inner.commit(point) }
    }

    func lastChunk(_ store: Store, _ point: RecoveryPointInfo, _ path: String) throws -> BlobID {
        var tree = try store.loadTree(point.point.root!)
        let comps = path.split(separator: "/").map { Array($0.utf8) }
        for c in comps.dropLast() { tree = try store.loadTree(tree.node(named: c)!.subtree!) }
        let node = try #require(tree.node(named: comps.last!))
        guard case .chunk(let id, _) = node.extents.last! else { throw ArchiveError(.io, "no chunk") }
        return id
    }

    func entries(_ dir: String) -> Set<String> { Set((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []) }

    func restore(_ repository: any BlobRepository, _ point: RecoveryPointInfo, to target: String, existing: ExistingEntries) async throws
        -> RestoreResult
    {
        try await Restorer(repository: repository, point: point, options: RestoreOptions(target: target, existing: existing, workers: 3)).run()
    }

    @Test func aFailedFileLeavesNothingAndSkipFinishesTheJob() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/big", pseudoRandom(300_000, seed: 1))  // many chunks: written in batches
        s.write("data/small", pseudoRandom(6_000, seed: 2))  // one chunk: restored in a group
        s.write("data/ok", [1, 2, 3])
        let p = try await backup(store, [s.sub("data")]).point
        let failing = try [lastChunk(store, p, s.sub("data/big")), lastChunk(store, p, s.sub("data/small"))]
        let broken = FailingRepository(inner: LocalRepository(store: store), failing: Set(failing), error: ArchiveError(.io, "connection lost"))
        let target = s.sub("out")
        let base = restored(target, s.sub("data"))
        let first = try await restore(broken, p, to: target, existing: .refuse)
        #expect(Set(first.failures.map(\.path)) == [base + "/big", base + "/small"])
        #expect(entries(base) == ["ok"], "no partial file under its name, no temporary file left")

        let again = try await restore(LocalRepository(store: store), p, to: target, existing: .skip)
        #expect(again.failures.isEmpty)
        #expect(again.skipped == 1, "only the complete file is skipped")
        #expect(differences(s.sub("data"), base) == [])
    }

    @Test func aFullDiskStopsTheRestoreWithoutPartialFiles() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        for i in 0..<6 { s.write("data/f\(i)", pseudoRandom(6_000, seed: UInt64(i))) }
        let p = try await backup(store, [s.sub("data")]).point
        let failing = try lastChunk(store, p, s.sub("data/f2"))
        let full = FailingRepository(
            inner: LocalRepository(store: store), failing: [failing],
            error: ArchiveError(.diskFull, "the disk is full"))
        let target = s.sub("out")
        let base = restored(target, s.sub("data"))
        let e = await #expect(throws: ArchiveError.self) { try await restore(full, p, to: target, existing: .refuse) }
        #expect(e?.code == .diskFull)
        for name in entries(base) {
            #expect(!PendingFile.isTemporaryName(Array(name.utf8)), "temporary file \(name) left behind")
            #expect(
                FileManager.default.contents(atPath: base + "/" + name) == FileManager.default.contents(atPath: s.sub("data/" + name)),
                "\(name) is complete or absent")
        }
        #expect(!entries(base).contains("f2"))
        let again = try await restore(LocalRepository(store: store), p, to: target, existing: .skip)
        #expect(again.failures.isEmpty)
        #expect(differences(s.sub("data"), base) == [])
    }

    /// A restore killed outright leaves its temporary files; the next run into the same folders removes them,
    /// but never an entry of the recovery point that merely looks like one.
    @Test func leftoversOfAKilledRestoreAreRemovedByTheNextRun() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/a", [1])
        s.write("data/.outpost-restore-0123456789abcdef", [7, 7])
        s.write("data/sub/b", [2])
        let p = try await backup(store, [s.sub("data")]).point
        let target = s.sub("out")
        let base = restored(target, s.sub("data"))
        _ = try await restore(LocalRepository(store: store), p, to: target, existing: .refuse)
        unlink(base + "/a")
        FileManager.default.createFile(atPath: base + "/.outpost-restore-fedcba9876543210", contents: Data([0]))
        FileManager.default.createFile(atPath: base + "/sub/.outpost-restore-00000000000000aa", contents: Data())
        mkdir(base + "/.outpost-restore-aaaaaaaaaaaaaaaa", 0o755)  // not a file this restore could have made
        FileManager.default.createFile(atPath: base + "/.outpost-restore-notatempname", contents: Data())
        let r = try await restore(LocalRepository(store: store), p, to: target, existing: .skip)
        #expect(r.failures.isEmpty)
        #expect(
            entries(base) == ["a", "sub", ".outpost-restore-0123456789abcdef", ".outpost-restore-aaaaaaaaaaaaaaaa", ".outpost-restore-notatempname"])
        #expect(entries(base + "/sub") == ["b"])
        #expect(FileManager.default.contents(atPath: base + "/.outpost-restore-0123456789abcdef") == Data([7, 7]))
        #expect(FileManager.default.contents(atPath: base + "/a") == Data([1]))
    }

    @Test func overwriteReplacesALinkOrAnEmptyFolderInTheWayWithoutFollowingIt() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/f1", [1])
        s.write("data/f2", [2])
        let outside = s.write("outside", [9])
        let p = try await backup(store, [s.sub("data")]).point
        let target = s.sub("out")
        let base = restored(target, s.sub("data"))
        _ = try await restore(LocalRepository(store: store), p, to: target, existing: .refuse)
        unlink(base + "/f1")
        symlink(outside, base + "/f1")
        unlink(base + "/f2")
        mkdir(base + "/f2", 0o755)
        let r = try await restore(LocalRepository(store: store), p, to: target, existing: .overwrite)
        #expect(r.failures.isEmpty)
        #expect(differences(s.sub("data"), base) == [])
        #expect(FileManager.default.contents(atPath: outside) == Data([9]))
        #expect(entries(base) == ["f1", "f2"])
    }
}
