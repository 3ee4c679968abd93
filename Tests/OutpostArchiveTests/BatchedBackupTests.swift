import Foundation
import OutpostCore
import OutpostStore
import OutpostTestSupport
import Synchronization
import Testing

@testable import OutpostArchive

#if canImport(Glibc)
    import Glibc
#endif

/// Small files read in batches (`FileQueue.takeMore`, `FileChunker.processBatch`), folder trees written by tasks of
/// their own (`TreeTask`), and owner names looked up once (`OwnerNames`). A regression that hangs fails on the
/// time limit instead of blocking the suite.
@Suite(.timeLimit(.minutes(5))) struct BatchedBackupTests {
    /// A repository that counts the questions and uploads it gets; its "which are missing?" questions may wait
    /// until `gate` is fulfilled, and it may refuse every tree.
    final class CountingRepository: BlobRepository {
        let inner: any BlobRepository
        let gate: Future<Void>?
        let refuseTrees: Bool
        let questions = Atomic<Int>(0)
        let dataSaves = Atomic<Int>(0)
        let treeSaves = Atomic<Int>(0)
        let commits = Atomic<Int>(0)

        init(_ inner: any BlobRepository, gate: Future<Void>? = nil, refuseTrees: Bool = false) {
            self.inner = inner
            self.gate = gate
            self.refuseTrees = refuseTrees
        }

        var chunkerParameters: ChunkerParameters { inner.chunkerParameters }
        var compressionLevel: Int32 { inner.compressionLevel }

        func missing(_ ids: [BlobID]) async throws -> Set<BlobID> {
            if let gate { await gate.value }
            questions.add(1, ordering: .relaxed)
            return try await inner.missing(ids)
        }

        func save(_ blobs: [PreparedBlob]) async throws -> SaveStats {
            if blobs.contains(where: { $0.kind == .tree }) {
                treeSaves.add(1, ordering: .relaxed)
                if refuseTrees { throw TreeRefused() }
            } else {
                dataSaves.add(1, ordering: .relaxed)
            }
            return try await inner.save(blobs)
        }

        func load(_ id: BlobID, kind: BlobKind) async throws -> [UInt8] { try await inner.load(id, kind: kind) }
        func latestPoint(machine: String) async throws -> RecoveryPointInfo? { try await inner.latestPoint(machine: machine) }
        func commit(_ point: RecoveryPoint) async throws -> RecoveryPointInfo {
            commits.add(1, ordering: .relaxed)
            return try await inner.commit(point)
        }
    }

    /// The repository's own error for a tree upload, told apart from any error the backup makes itself.
    struct TreeRefused: Error {}

    /// Counts calls of a hook (hooks are synchronous and may run on any thread).
    final class Counter: Sendable {
        let value = Atomic<Int>(0)
        func bump() -> Int { value.add(1, ordering: .relaxed).newValue }
    }

    // MARK: Helpers

    /// A job for the queue only: it is never opened, so it needs no folder (-1 is closed harmlessly).
    static func queued(_ name: String, size: Int = 1) -> FileJob {
        FileJob(
            path: bytes(name), directory: DirectoryHandle(fd: -1), node: Node(name: bytes(name), type: .file, size: UInt64(size)),
            result: Future())
    }

    static func name(_ job: FileJob) -> String { String(decoding: job.path, as: UTF8.self) }

    /// A job for `folder/name` as the walker makes it: the node holds the file's size, inode and device now.
    static func job(_ name: String, in folder: String, directory: DirectoryHandle) -> FileJob {
        let path = folder + "/" + name
        var st = stat()
        lstat(path, &st)
        return FileJob(
            path: bytes(path), directory: directory,
            node: Node(name: bytes(name), type: .file, size: UInt64(st.st_size), inode: UInt64(st.st_ino), device: UInt64(st.st_dev)),
            result: Future())
    }

    static func openFolder(_ path: String) throws -> DirectoryHandle {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try #require(fd >= 0, "opening \(path)")
        return DirectoryHandle(fd: fd)
    }

    static func makeChunker(_ repo: any BlobRepository, tally: BackupTally, hooks: BackupOptions.Hooks = BackupOptions.Hooks()) -> FileChunker {
        FileChunker(
            chunker: FastCDC(repo.chunkerParameters), compressors: ResourcePool { ZstdCompressor(level: 3) },
            uploader: BlobUploader(repository: repo, tally: tally), tally: tally, hooks: hooks)
    }

    /// The file's bytes as its extents give them back from `repo`; nil when a chunk is absent or of another length.
    static func content(_ node: Node, in repo: MemoryRepository) -> [UInt8]? {
        var out: [UInt8] = []
        for extent in node.extents {
            switch extent {
            case .chunk(let id, let length):
                guard let plain = repo.blobs.withLock({ $0[id] }), plain.count == length else { return nil }
                out += plain
            case .hole(let length):
                out += [UInt8](repeating: 0, count: length)
            }
        }
        return out
    }

    static func stored(_ result: FileResult) -> Node? {
        if case .stored(let node) = result { node } else { nil }
    }

    // MARK: FileQueue

    @Test func theQueueHandsOutJobsInOrderAndEndsOnceFinishedAndEmpty() async {
        let queue = FileQueue(limit: 8)
        for n in ["a", "b", "c"] { await queue.submit(Self.queued(n)) }
        queue.finish()
        var got: [String] = []
        while let job = await queue.next() { got.append(Self.name(job)) }
        #expect(got == ["a", "b", "c"], "what was queued before `finish` is still handed out, in order")
        #expect(await queue.next() == nil, "finished and empty: nil again")
    }

    @Test func aWorkerWaitingForAJobGetsOneSubmittedLaterAndNilWhenTheQueueFinishes() async {
        let queue = FileQueue(limit: 8)
        let workers = (0..<2).map { _ in Task { await queue.next().map(Self.name) } }
        // Both workers wait in `next()` before anything is submitted: the hand-off to a waiting worker is tested.
        while queue.waitingWorkers < 2 { await Task.yield() }
        await queue.submit(Self.queued("a"))
        await queue.submit(Self.queued("b"))
        var got: Set<String?> = []
        for w in workers { got.insert(await w.value) }
        #expect(got == ["a", "b"], "each waiting worker gets one job")
        let idle = Task { await queue.next() == nil }
        while queue.waitingWorkers < 1 { await Task.yield() }
        queue.finish()
        #expect(await idle.value, "a worker waiting when the queue finishes gets nil")
    }

    @Test func takeMoreTakesFromTheFrontUntilRefusedAndAtMostMax() async {
        let queue = FileQueue(limit: 16)
        for (n, size) in [("a", 10), ("b", 20), ("c", 5_000), ("d", 30)] { await queue.submit(Self.queued(n, size: size)) }
        #expect(await queue.next().map(Self.name) == "a")
        var asked: [String] = []
        let small = queue.takeMore(max: 10) { job in
            asked.append(Self.name(job))
            return job.node.size < 1_000
        }
        #expect(small.map(Self.name) == ["b"], "c is refused, and d behind it is not taken past it")
        #expect(asked == ["b", "c"], "nothing after the refused job is looked at")
        #expect(await queue.next().map(Self.name) == "c", "the refused job is still first")
        for n in ["e", "f", "g"] { await queue.submit(Self.queued(n)) }
        #expect(queue.takeMore(max: 0) { _ in true }.isEmpty)
        #expect(queue.takeMore(max: 3) { _ in true }.map(Self.name) == ["d", "e", "f"], "at most `max`, in order")
        // A budget kept by the predicate, as the workers keep their buffer's room.
        for n in ["h", "i"] { await queue.submit(Self.queued(n, size: 40)) }
        var room = 50
        let fitting = queue.takeMore(max: 10) { job in
            guard Int(job.node.size) < room else { return false }
            room -= Int(job.node.size)
            return true
        }
        #expect(fitting.map(Self.name) == ["g", "h"])
        queue.finish()
        #expect(await queue.next().map(Self.name) == "i")
        #expect(queue.takeMore(max: 10) { _ in true }.isEmpty)
    }

    @Test func doneGivesBackPlacesToSubmitsWaitingForRoom() async {
        let queue = FileQueue(limit: 2)
        await queue.submit(Self.queued("a"))
        await queue.submit(Self.queued("b"))
        let waiting = ["c", "d"].map { n in Task { await queue.submit(Self.queued(n)) } }
        #expect(await queue.next().map(Self.name) == "a")
        #expect(queue.takeMore(max: 8) { _ in true }.map(Self.name) == ["b"])
        #expect(queue.takeMore(max: 8) { _ in true }.isEmpty, "taking jobs gives no room back: c and d still wait")
        queue.done(2)
        for w in waiting { await w.value }
        #expect(Set(queue.takeMore(max: 8) { _ in true }.map(Self.name)) == ["c", "d"], "two places for two submits")
    }

    // MARK: FileChunker.processBatch

    /// Ten small files (two alike, one of several chunks): one question and one upload for all of them.
    @Test func aBatchOfSmallFilesAsksOnceAndUploadsOnce() async throws {
        let s = Scratch()
        var contents: [String: [UInt8]] = [:]
        for i in 0..<8 { contents["f\(i)"] = pseudoRandom(1_000 + i * 7_000, seed: UInt64(i)) }
        contents["big"] = pseudoRandom(300_000, seed: 99)
        contents["same-as-f3"] = contents["f3"]
        for (n, c) in contents { s.write("in/" + n, c) }
        let folder = s.sub("in")
        let directory = try Self.openFolder(folder)
        let names = contents.keys.sorted()
        let jobs = names.map { Self.job($0, in: folder, directory: directory) }
        let memory = MemoryRepository()
        let repo = CountingRepository(memory)
        let tally = makeTally()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: FileChunker.bufferSize, alignment: 64)
        defer { buffer.deallocate() }

        let results = await Self.makeChunker(repo, tally: tally).processBatch(jobs, buffer: UnsafeTransfer(buffer))

        try #require(results.count == jobs.count)
        for (n, result) in zip(names, results) {
            let node = try #require(Self.stored(result), "\(n) is stored")
            #expect(node.name == bytes(n), "results come in the jobs' order")
            #expect(node.size == UInt64(contents[n]!.count))
            #expect(node.extents.allSatisfy { if case .chunk = $0 { true } else { false } })
            #expect(Self.content(node, in: memory) == contents[n], "\(n)'s chunks give its bytes back")
        }
        #expect(Self.stored(results[names.firstIndex(of: "big")!])!.extents.count > 1, "the big file is several chunks")
        #expect(repo.questions.load(ordering: .relaxed) == 1, "one question for the whole batch")
        #expect(repo.dataSaves.load(ordering: .relaxed) == 1, "one upload for the whole batch")
        let sent = memory.saves.withLock { $0.flatMap { $0 } }
        #expect(sent.count == Set(sent).count, "the alike files' chunks are sent once")
        #expect(tally.failed.isEmpty)
        #expect(tally.counted.bytesRead == Int64(contents.values.reduce(0) { $0 + $1.count }))
    }

    /// A file is cut the same in a batch as on its own: otherwise a file read one way, then the other, would
    /// store its content twice.
    @Test func aFileIsCutTheSameInABatchAsOnItsOwn() async throws {
        let s = Scratch()
        s.write("in/a", pseudoRandom(5_000, seed: 1))
        s.write("in/b", pseudoRandom(400_000, seed: 2))
        let folder = s.sub("in")
        let directory = try Self.openFolder(folder)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: FileChunker.bufferSize, alignment: 64)
        defer { buffer.deallocate() }
        let batched = await Self.makeChunker(MemoryRepository(), tally: makeTally()).processBatch(
            ["a", "b"].map { Self.job($0, in: folder, directory: directory) }, buffer: UnsafeTransfer(buffer))
        let alone = await Self.makeChunker(MemoryRepository(), tally: makeTally()).process(
            Self.job("b", in: folder, directory: directory), buffer: UnsafeTransfer(buffer))
        let inBatch = try #require(Self.stored(batched[1]))
        let onItsOwn = try #require(Self.stored(alone))
        #expect(inBatch.extents.count > 3)
        #expect(inBatch.extents == onItsOwn.extents)
    }

    @Test func aFileThatVanishedBeforeItWasOpenedIsSkippedAndTheOthersAreStored() async throws {
        let s = Scratch()
        let contents = (0..<5).map { pseudoRandom(2_000 + $0 * 100, seed: UInt64(10 + $0)) }
        for (i, c) in contents.enumerated() { s.write("in/f\(i)", c) }
        let folder = s.sub("in")
        let directory = try Self.openFolder(folder)
        let jobs = (0..<5).map { Self.job("f\($0)", in: folder, directory: directory) }
        unlink(folder + "/f2")
        let memory = MemoryRepository()
        let repo = CountingRepository(memory)
        let tally = makeTally()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: FileChunker.bufferSize, alignment: 64)
        defer { buffer.deallocate() }

        let results = await Self.makeChunker(repo, tally: tally).processBatch(jobs, buffer: UnsafeTransfer(buffer))

        try #require(results.count == 5)
        guard case .skipped = results[2] else { Issue.record("f2 vanished: skipped, got \(results[2])"); return }
        for i in [0, 1, 3, 4] {
            let node = try #require(Self.stored(results[i]), "f\(i) is stored")
            #expect(Self.content(node, in: memory) == contents[i])
        }
        #expect(tally.failed.map(\.path) == [folder + "/f2"], "the vanished file is recorded")
        #expect(tally.failed.first?.reason.contains("vanished") == true)
        #expect(repo.questions.load(ordering: .relaxed) == 1)
        #expect(repo.dataSaves.load(ordering: .relaxed) == 1)
    }

    /// A sparse file, and one bigger than the buffer's room left, are read on their own (holes kept), and their
    /// results still come in the jobs' order.
    @Test func sparseAndTooBigFilesOfABatchAreReadOnTheirOwn() async throws {
        let s = Scratch()
        let folder = s.sub("in")
        let a = pseudoRandom(100_000, seed: 21)
        let big = pseudoRandom(450_000, seed: 22)
        let c = pseudoRandom(10_000, seed: 23)
        s.write("in/a", a)
        s.write("in/big", big)
        s.write("in/c", c)
        let data = pseudoRandom(20_000, seed: 24)
        let fd = open(folder + "/sparse", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 200_000) }
        ftruncate(fd, 300_000)
        close(fd)
        var st = stat()
        lstat(folder + "/sparse", &st)
        try #require(Int64(st.st_blocks) * 512 < Int64(st.st_size), "the file system keeps holes")
        let sparse = [UInt8](repeating: 0, count: 200_000) + data + [UInt8](repeating: 0, count: 80_000)
        let directory = try Self.openFolder(folder)
        let names = ["a", "sparse", "big", "c"]
        let jobs = names.map { Self.job($0, in: folder, directory: directory) }
        let memory = MemoryRepository()
        let repo = CountingRepository(memory)
        let tally = makeTally()
        // 512 KiB: after a (100 KB), big (450 KB) does not fit; the sparse file (300 KB) would.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 512 << 10, alignment: 64)
        defer { buffer.deallocate() }

        let opened = Mutex<[String: Int]>([:])
        var hooks = BackupOptions.Hooks()
        hooks.beforeOpen = { path in opened.withLock { $0[String(decoding: path, as: UTF8.self), default: 0] += 1 } }
        let results = await Self.makeChunker(repo, tally: tally, hooks: hooks).processBatch(jobs, buffer: UnsafeTransfer(buffer))
        #expect(opened.withLock { $0.values.allSatisfy { $0 == 1 } && $0.count == jobs.count }, "each file is opened once: \(opened.withLock { $0 })")

        try #require(results.count == 4)
        let nodes = try results.map { try #require(Self.stored($0)) }
        #expect(nodes.map(\.name) == names.map(bytes), "results come in the jobs' order")
        for (node, want) in zip(nodes, [a, sparse, big, c]) {
            #expect(Self.content(node, in: memory) == want, "\(String(decoding: node.name, as: UTF8.self)) reads back")
        }
        #expect(nodes[1].extents.contains { if case .hole = $0 { true } else { false } }, "holes are kept: read on its own")
        #expect(tally.counted.bytesRead < Int64(a.count + big.count + c.count + 200_000), "the hole was not read")
        #expect(repo.questions.load(ordering: .relaxed) == 3, "one for the batch, one each for the files read alone")
        #expect(tally.failed.isEmpty)
    }

    @Test func aBatchAfterAFatalErrorReadsNothing() async throws {
        let s = Scratch()
        s.write("in/a", [1, 2, 3])
        s.write("in/b", [4, 5, 6])
        let directory = try Self.openFolder(s.sub("in"))
        let repo = CountingRepository(MemoryRepository())
        let tally = makeTally()
        tally.stop(TreeRefused())
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        let results = await Self.makeChunker(repo, tally: tally).processBatch(
            ["a", "b"].map { Self.job($0, in: s.sub("in"), directory: directory) }, buffer: UnsafeTransfer(buffer))
        #expect(results.count == 2)
        #expect(results.allSatisfy { if case .fatal(let e) = $0 { e is TreeRefused } else { false } })
        #expect(repo.questions.load(ordering: .relaxed) == 0)
    }

    // MARK: The whole backup

    /// 300 small files in 30 folders. The repository holds its answers until the walk lists the 30th folder: by
    /// then the files of the 29 others are queued (a folder's files are queued before the walk goes on), so
    /// the workers take them in batches. Bound: at most 3 batches (one per worker) before the gate opens, 4 of
    /// 64 files, and after a smaller one emptied the queue only batches holding one of the last folder's 10
    /// files: at most 18 uploads of data, against 300 file by file.
    @Test func smallFilesOfManyFoldersShareUploadsAndRestoreIdentically() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let data = s.sub("data")
        for d in 0..<30 {
            for f in 0..<10 { s.write("data/d\(d)/f\(f)", pseudoRandom(1_000 + (d * 10 + f) * 37, seed: UInt64(d * 10 + f))) }
        }
        let gate = Future<Void>()
        let listed = Counter()
        let prefix = bytes(data + "/")
        let repo = CountingRepository(LocalRepository(store: store), gate: gate)
        var options = BackupOptions(machine: "m1", paths: [data], workers: 3)
        options.hooks.beforeList = { path in
            if path.starts(with: prefix), listed.bump() == 30 { gate.fulfil(()) }
        }

        let first = try await Archiver(repository: repo, options: options).run()

        #expect(first.failures.isEmpty)
        #expect(first.point.point.summary.filesNew == 300)
        #expect(listed.value.load(ordering: .relaxed) == 30)
        let uploads = repo.dataSaves.load(ordering: .relaxed)
        #expect(uploads <= 18, "small files share uploads: \(uploads) uploads for 300 files")
        let target = s.sub("out")
        let r = try await restore(store, first.point, to: target)
        #expect(r.failures.isEmpty)
        #expect(differences(data, restored(target, data)) == [])

        let second = try await backup(store, [data]).point
        #expect(second.point.summary.filesUnchanged == 300)
        #expect(second.point.summary.bytesRead == 0)
        #expect(second.point.summary.bytesAddedRaw == 0)
        #expect(try node(store, second, data).subtree == node(store, first.point, data).subtree, "unchanged folders give the same trees")
    }

    // MARK: TreeTask

    /// A folder's tree is written by a task the walk does not wait for: its failure still reaches the backup,
    /// which throws the repository's error rather than hang or commit.
    @Test func aTreeThatFailsToUploadFailsTheBackupWithTheRepositorysError() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/a/f", pseudoRandom(3_000, seed: 1))
        s.write("data/b/c/g", pseudoRandom(3_000, seed: 2))
        s.write("data/h", pseudoRandom(3_000, seed: 3))
        let repo = CountingRepository(LocalRepository(store: store), refuseTrees: true)
        let options = BackupOptions(machine: "m1", paths: [s.sub("data")], workers: 2)
        await #expect(throws: TreeRefused.self) { try await Archiver(repository: repo, options: options).run() }
        #expect(repo.treeSaves.load(ordering: .relaxed) >= 1)
        #expect(repo.commits.load(ordering: .relaxed) == 0)
        #expect(try store.index.points().isEmpty)
    }

    // MARK: OwnerNames

    @Test func ownerNamesAnswerAsTheLookUpsDoAndKeepTheirAnswers() {
        let names = OwnerNames()
        let root = bytes("root")
        let unknown = bytes("outpost-no-such-owner-7f3a")
        #expect(names.uid(named: root) == OwnerNames.uid(named: root))
        #expect(names.uid(named: root) == 0)
        #expect(names.gid(named: root) == OwnerNames.gid(named: root))
        #expect(names.gid(named: root) == 0)
        #expect(names.uid(named: unknown) == nil)
        #expect(names.gid(named: unknown) == nil)
        #expect(names.uid(named: []) == nil)
        // Asked again: the kept answers, an unknown name's nil included.
        for _ in 0..<3 {
            #expect(names.uid(named: root) == 0)
            #expect(names.gid(named: root) == 0)
            #expect(names.uid(named: unknown) == nil)
            #expect(names.gid(named: unknown) == nil)
        }
    }
}
