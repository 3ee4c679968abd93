import Foundation
import Logging
import OutpostCore
import OutpostTestSupport
import Synchronization
import Testing

@testable import OutpostArchive

#if canImport(Glibc)
    import Glibc
#endif

func makeTally() -> BackupTally { BackupTally(progress: BackupProgress(), logger: Logger(label: "test")) }

@Suite struct SelectionTests {
    @Test func pathsBecomeATrieAndAPathInsideAnotherAddsNothing() throws {
        let s = Scratch()
        s.write("a/b/c", [1])
        s.write("d", [2])
        let selection = try Selection(paths: [s.sub("a/b"), s.sub("d"), s.sub("a"), s.sub("a/./b/../b/c")], exclusions: ExclusionList([]))
        #expect(selection.paths == [s.sub("a"), s.sub("a/b"), s.sub("a/b/c"), s.sub("d")], "absolute, normalised, sorted")
        var node = selection.root
        for comp in s.path.split(separator: "/") {
            #expect(!node.selected)
            node = try #require(node.children[Array(comp.utf8)])
        }
        let a = try #require(node.children[bytes("a")])
        #expect(a.selected)
        #expect(a.children.isEmpty, "everything below /a is read anyway")
        #expect(node.children[bytes("d")]?.selected == true)
    }

    @Test func missingPathsNoPathsAndTheRootAreRefused() {
        let s = Scratch()
        let missing = #expect(throws: ArchiveError.self) { try Selection(paths: [s.sub("nope")], exclusions: ExclusionList([])) }
        #expect(missing?.exitCode == .usage)
        #expect(missing?.message.contains("cannot back up \(s.sub("nope"))") == true)
        #expect(throws: ArchiveError.self) { try Selection(paths: [], exclusions: ExclusionList([])) }
        let root = #expect(throws: ArchiveError.self) { try Selection(paths: ["/"], exclusions: ExclusionList([])) }
        #expect(root?.message.contains("not supported") == true)
    }
}

@Suite struct ChangeDetectorTests {
    let id = BlobID.hash([1])
    var previous: Node {
        Node(name: bytes("f"), type: .file, mtimeNanos: 10, ctimeNanos: 20, size: 5, inode: 7, extents: [.chunk(id, length: 5)])
    }

    @Test func aFileMatchingSizeTimesAndInodeKeepsItsExtents() {
        var now = previous
        now.extents = []
        guard case .unchanged(let extents) = ChangeDetector.verdict(for: now, previous: previous) else { Issue.record("unchanged"); return }
        #expect(extents == [.chunk(id, length: 5)])
    }

    @Test func anyDifferenceMeansChangedAndNoFileMeansNew() {
        let changes: [(inout Node) -> Void] = [{ $0.size = 6 }, { $0.mtimeNanos = 11 }, { $0.ctimeNanos = 21 }, { $0.inode = 8 }]
        for change in changes {
            var now = previous
            change(&now)
            guard case .changed = ChangeDetector.verdict(for: now, previous: previous) else { Issue.record("changed: \(now)"); continue }
        }
        guard case .new = ChangeDetector.verdict(for: previous, previous: nil) else { Issue.record("new"); return }
        var dir = previous
        dir.type = .directory
        guard case .new = ChangeDetector.verdict(for: previous, previous: dir) else { Issue.record("a folder was no file"); return }
    }

    @Test func onlyAFolderHasAPreviousSubtreeAndAnUnreadableOneIsNone() async {
        let sub = BlobID.hash([2])
        #expect(ChangeDetector.previousSubtree(of: Node(name: bytes("d"), type: .directory, subtree: sub)) == sub)
        #expect(ChangeDetector.previousSubtree(of: Node(name: bytes("d"), type: .file)) == nil)
        let repo = MemoryRepository()
        let detector = ChangeDetector(trees: TreeWalker(repository: repo))
        #expect(await detector.previousTree(sub) == nil, "not in the repository: everything is read again")
        #expect(await detector.previousTree(repo.put([file("x", size: 1)]))?.nodes.count == 1)
    }
}

@Suite struct TreeWriterTests {
    @Test func aTreeTheRepositoryHasIsNotSentAgain() async throws {
        let repo = MemoryRepository()
        let tally = makeTally()
        let writer = TreeWriter(repository: repo, compressors: ResourcePool { ZstdCompressor(level: 3) }, tally: tally)
        let tree = Tree(nodes: [file("a", size: 3)])
        let first = try await writer.write(tree)
        let second = try await writer.write(tree)
        #expect(first == second)
        #expect(first == BlobID.hash(tree.encode()))
        #expect(repo.saves.withLock { $0.count } == 1)
        #expect(tally.counted.bytesAddedStored > 0)
    }
}

@Suite struct BlobUploaderTests {
    /// A repository whose saves wait until released, or fail.
    final class GatedRepository: BlobRepository {
        let inner = MemoryRepository()
        let gate = AsyncSemaphore(permits: 0)
        let fail: Bool
        init(fail: Bool = false) { self.fail = fail }
        var chunkerParameters: ChunkerParameters { inner.chunkerParameters }
        var compressionLevel: Int32 { 3 }
        func missing(_ ids: [BlobID]) async throws -> Set<BlobID> { try await inner.missing(ids) }
        func save(_ blobs: [PreparedBlob]) async throws -> SaveStats {
            await gate.acquire()
            if fail { throw ArchiveError(.io, "upload failed") }
            return try await inner.save(blobs)
        }
        func load(_ id: BlobID, kind: BlobKind) async throws -> [UInt8] { try await inner.load(id, kind: kind) }
        func latestPoint(machine: String) async throws -> RecoveryPointInfo? { nil }
        func commit(_ point: RecoveryPoint) async throws -> RecoveryPointInfo { try await inner.commit(point) }
    }

    func blob(_ bytes: [UInt8]) -> PreparedBlob {
        bytes.withUnsafeBytes { PreparedBlob.make(kind: .data, plaintext: $0, compressor: nil) }
    }

    @Test func claimSkipsWhatTheRepositoryHasRepeatsAndWhatIsInFlight() async throws {
        let repo = GatedRepository()
        let uploader = BlobUploader(repository: repo, tally: makeTally())
        let (a, b, c) = (blob([1]), blob([2]), blob([3]))
        _ = try await repo.inner.save([c])
        let work = try await uploader.claim([a.id, b.id, a.id, c.id], cuts: [(0, 1), (1, 1), (2, 1), (3, 1)])
        #expect(work.map(\.id) == [a.id, b.id])
        #expect(work.map(\.offset) == [0, 1], "a repeat is sent from its first place")
        let other = try await uploader.claim([b.id, c.id], cuts: [(0, 1), (1, 1)])
        #expect(other.isEmpty, "b is in flight for the first file")
        #expect(uploader.claimedCount == 2)
        try await uploader.withUploads { uploads -> Void in
            try await uploader.upload([a, b], claimed: work.map(\.id), in: &uploads)
            repo.gate.release()
        }
        #expect(uploader.claimedCount == 0, "landed: no longer in flight")
        #expect(try await uploader.claim([b.id], cuts: [(0, 1)]).isEmpty, "the repository has it now")
    }

    /// A file's next upload waits for its previous one; when that failed, the error ends the file and the
    /// claims of the chunks not sent are given up.
    @Test func aFailedUploadEndsTheFileAndGivesUpItsClaims() async throws {
        let repo = GatedRepository(fail: true)
        let tally = makeTally()
        let uploader = BlobUploader(repository: repo, tally: tally)
        let (a, b) = (blob([1]), blob([2]))
        await #expect(throws: ArchiveError.self) {
            try await uploader.withUploads { uploads -> Void in
                let first = try await uploader.claim([a.id], cuts: [(0, 1)])
                try await uploader.upload([a], claimed: first.map(\.id), in: &uploads)
                let second = try await uploader.claim([b.id], cuts: [(0, 1)])
                repo.gate.release()
                try await uploader.upload([b], claimed: second.map(\.id), in: &uploads)
            }
        }
        #expect(uploader.claimedCount == 0)
        #expect(repo.inner.saves.withLock { $0.isEmpty })
    }

    /// When reading fails, uploads already started finish, and a failed one is fatal to the backup.
    @Test func uploadsOfAFileThatFailsToReadFinishAndTheirFailureIsFatal() async throws {
        let repo = GatedRepository(fail: true)
        let tally = makeTally()
        let uploader = BlobUploader(repository: repo, tally: tally)
        let a = blob([1])
        let e = await #expect(throws: Errno.self) {
            _ = try await uploader.withUploads { uploads in
                try await uploader.upload([a], claimed: [a.id], in: &uploads)
                repo.gate.release()
                throw Errno(EIO)
            }
        }
        #expect(e?.code == EIO, "the read error is the file's")
        #expect(tally.fatalError != nil, "the upload's failure stops the backup")
    }
}

@Suite struct FileChunkerTests {
    @Test func compressionLanesKeepTheOrderOfTheChunks() async throws {
        let repo = MemoryRepository()
        let tally = makeTally()
        let chunker = FileChunker(
            chunker: FastCDC(repo.chunkerParameters), compressors: ResourcePool { ZstdCompressor(level: 3) },
            uploader: BlobUploader(repository: repo, tally: tally), tally: tally, hooks: BackupOptions.Hooks())
        let data = pseudoRandom(64 * 100, seed: 9)
        let work: [BlobUploader.Work] = (0..<100).map { i in
            (BlobID.hash(Array(data[i * 64..<(i + 1) * 64])), i * 64, 64)
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: data.count, alignment: 64)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: data)
        let blobs = await chunker.compress(work, base: UnsafeTransfer(UnsafeRawPointer(buffer.baseAddress!)))
        #expect(blobs.map(\.id) == work.map(\.id))
        #expect(blobs.allSatisfy { $0.rawLength == 64 })
    }

    @Test func holesAreNotReadAndDataIsChunked() async throws {
        let s = Scratch()
        let path = s.sub("sparse")
        let fd = open(path, O_WRONLY | O_CREAT, 0o644)
        let data = pseudoRandom(200_000, seed: 4)
        _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 64 << 20) }
        ftruncate(fd, 128 << 20)
        close(fd)
        let repo = MemoryRepository()
        let tally = makeTally()
        let chunker = FileChunker(
            chunker: FastCDC(repo.chunkerParameters), compressors: ResourcePool { ZstdCompressor(level: 3) },
            uploader: BlobUploader(repository: repo, tally: tally), tally: tally, hooks: BackupOptions.Hooks())
        let dirFD = open(s.path, O_RDONLY | O_DIRECTORY)
        var st = stat()
        lstat(path, &st)
        let job = FileJob(
            path: Array(path.utf8), directory: DirectoryHandle(fd: dirFD),
            node: Node(name: bytes("sparse"), type: .file, size: UInt64(st.st_size), inode: UInt64(st.st_ino), device: UInt64(st.st_dev)),
            result: Future())
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        guard case .stored(let node) = await chunker.process(job, buffer: UnsafeTransfer(buffer)) else { Issue.record("stored"); return }
        #expect(node.size == 128 << 20)
        guard case .hole(let first) = node.extents.first, case .hole = node.extents.last else { Issue.record("\(node.extents)"); return }
        #expect(first >= 60 << 20)
        #expect(tally.counted.bytesRead < 8 << 20, "the holes were not read")
        let chunks = node.extents.filter { if case .chunk = $0 { true } else { false } }
        #expect(chunks.count > 3)
        #expect(repo.blobs.withLock { $0.count } == chunks.count)
    }
}

@Suite struct HardLinksTests {
    @Test func theFirstNameOfAFileIsKeptForTheOthers() {
        var links = HardLinks()
        let first = Future<FileResult>()
        #expect(links.claim(device: 1, inode: 2, path: bytes("/a"), result: first) == nil)
        #expect(links.claim(device: 1, inode: 3, path: bytes("/b"), result: Future()) == nil, "another inode")
        #expect(links.claim(device: 2, inode: 2, path: bytes("/c"), result: Future()) == nil, "another device")
        let again = links.claim(device: 1, inode: 2, path: bytes("/d"), result: Future())
        #expect(again?.path == bytes("/a"))
        #expect(again?.result === first)
    }
}
