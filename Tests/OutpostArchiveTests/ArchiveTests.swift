import COutpostSystem
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

@Suite struct ArchiveTests {
    /// A tree with every kind of entry the issue lists.
    func makeCorpus(_ s: Scratch) -> String {
        let root = s.sub("data")
        s.write("data/big.bin", pseudoRandom(700_000, seed: 42))
        s.write("data/text.txt", Array(String(repeating: "outpost keeps branch offices safe\n", count: 5000).utf8), mode: 0o640)
        s.write("data/empty", [])
        s.write("data/exec.sh", Array("#!/bin/sh\necho hi\n".utf8), mode: 0o751)
        s.write("data/dir/nested/deeper/file", pseudoRandom(30_000, seed: 7))
        symlink("text.txt", root + "/link")
        symlink("does-not-exist", root + "/dangling")
        link(root + "/text.txt", root + "/dir/hardlink")
        mkfifo(root + "/fifo", 0o600)
        _ = outpost_lsetxattr(root + "/big.bin", "user.origin", "branch-7", 8)
        let long = String(repeating: "n", count: 255)
        s.write("data/" + long, [9, 9, 9])
        var deep = "data/deep"
        for i in 0..<40 { deep += "/level\(i)" }
        s.write(deep + "/leaf", [1])
        var times = [timespec(tv_sec: 1_600_000_000, tv_nsec: 123_456_789), timespec(tv_sec: 1_600_000_000, tv_nsec: 123_456_789)]
        utimensat(AT_FDCWD, root + "/text.txt", &times, 0)
        return root
    }

    /// A repository whose data uploads wait until two "which are missing?" answers were given, so that two
    /// workers reading identical files both hear "missing" before either upload lands. It counts saved ids.
    final class RacingRepository: BlobRepository {
        let inner: LocalRepository
        let asked = AsyncSemaphore(permits: 0)
        let saved = Mutex<[BlobID: Int]>([:])
        init(_ store: Store) { inner = LocalRepository(store: store) }
        var chunkerParameters: ChunkerParameters { inner.chunkerParameters }
        var compressionLevel: Int32 { inner.compressionLevel }
        func missing(_ ids: [BlobID]) async throws -> Set<BlobID> {
            let answer = try await inner.missing(ids)
            asked.release()
            return answer
        }
        func save(_ blobs: [PreparedBlob]) async throws -> SaveStats {
            if blobs.contains(where: { $0.kind == .data }) {
                // Wait for both files' questions (then give the permits back for later callers).
                await asked.acquire(); await asked.acquire(); asked.release(); asked.release()
            }
            saved.withLock { for b in blobs { $0[b.id, default: 0] += 1 } }
            return try await inner.save(blobs)
        }
        func load(_ id: BlobID, kind: BlobKind) async throws -> [UInt8] { try await inner.load(id, kind: kind) }
        func latestPoint(machine: String) async throws -> RecoveryPointInfo? { try await inner.latestPoint(machine: machine) }
        func commit(_ point: RecoveryPoint) async throws -> RecoveryPointInfo { try await inner.commit(point) }
    }

    @Test func identicalFilesReadAtOnceSendEachChunkOnce() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        // Bigger than `FileChunker.batchFileSize`: each file is read by a worker of its own, at the same time.
        let content = pseudoRandom(FileChunker.batchFileSize + 100_000, seed: 77)
        s.write("data/a", content)
        s.write("data/b", content)
        let repo = RacingRepository(store)
        let options = BackupOptions(machine: "m1", paths: [s.sub("data")], workers: 2)
        let result = try await Archiver(repository: repo, options: options).run()
        #expect(result.failures.isEmpty)
        let counts = repo.saved.withLock { $0 }
        #expect(counts.count > 3, "the file is several chunks")
        #expect(counts.values.allSatisfy { $0 == 1 }, "no chunk is compressed and sent twice: \(counts.values.sorted())")
        _ = try await restore(store, result.point, to: s.sub("out"))
        #expect(differences(s.sub("data"), restored(s.sub("out"), s.sub("data"))) == [])
    }

    @Test func restoreReproducesContentAndMetadata() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let data = makeCorpus(s)
        let result = try await backup(store, [data])
        #expect(result.failures.isEmpty)
        let summary = result.point.point.summary
        #expect(summary.filesNew >= 6)
        #expect(summary.bytesAddedRaw > 700_000)
        let target = s.sub("restore")
        let r = try await restore(store, result.point, to: target)
        #expect(r.failures.isEmpty)
        #expect(differences(data, restored(target, data)) == [])
    }

    @Test func nonUTF8NamesRoundTrip() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let dir = s.sub("raw")
        mkdir(dir, 0o755)
        let name: [UInt8] = [0xff, 0xfe, 0x41, 0x80]
        let path = Array(dir.utf8) + [0x2f] + name
        let fd = FS.withCPath(path) { open($0, O_WRONLY | O_CREAT, 0o644) }
        #expect(fd >= 0)
        _ = write(fd, "x", 1)
        close(fd)
        let p = try await backup(store, [dir]).point
        let tree = try store.loadTree(p.point.root!)
        #expect(tree.nodes.count == 1)
        let target = s.sub("out")
        _ = try await restore(store, p, to: target)
        let restoredPath = Array((target + dir).utf8) + [0x2f] + name
        var st = stat()
        #expect(FS.withCPath(restoredPath) { lstat($0, &st) } == 0)
        #expect(st.st_size == 1)
    }

    @Test func unchangedFilesAreNotReadAgainAndUnchangedTreesCostNothing() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let data = makeCorpus(s)
        let first = try await backup(store, [data]).point
        let second = try await backup(store, [data]).point
        #expect(second.point.summary.bytesRead == 0)
        #expect(second.point.summary.filesNew == 0)
        #expect(second.point.summary.filesChanged == 0)
        #expect(
            try node(store, second, data).subtree == node(store, first, data).subtree,
            "an unchanged folder encodes to the same tree")
        #expect(second.point.summary.bytesAddedRaw == 0)
        s.write("data/dir/nested/deeper/file", pseudoRandom(30_000, seed: 8))
        let third = try await backup(store, [data]).point
        #expect(third.point.summary.filesChanged == 1)
        #expect(third.point.summary.bytesRead == 30_000)
        #expect(third.point.summary.filesUnchanged >= 5)
    }

    @Test func excludedEntriesAreLeftOut() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/keep.txt", [1])
        s.write("data/skip.tmp", [2])
        s.write("data/cache/x", [3])
        s.write("data/sub/cache/y", [4])
        let p = try await backup(store, [s.sub("data")], excludes: ["*.tmp", s.sub("data/cache")]).point
        let target = s.sub("out")
        _ = try await restore(store, p, to: target)
        let base = restored(target, s.sub("data"))
        #expect(FileManager.default.fileExists(atPath: base + "/keep.txt"))
        #expect(!FileManager.default.fileExists(atPath: base + "/skip.tmp"))
        #expect(!FileManager.default.fileExists(atPath: base + "/cache"))
        #expect(FileManager.default.fileExists(atPath: base + "/sub/cache/y"), "a pattern with / matches only that path")
    }

    @Test func aSparseFileIsStoredAsHolesAndRestoredSparse() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let path = s.sub("sparse/disk.img")
        try FileManager.default.createDirectory(atPath: s.sub("sparse"), withIntermediateDirectories: true)
        let fd = open(path, O_WRONLY | O_CREAT, 0o644)
        let marker = pseudoRandom(100_000, seed: 3)
        _ = marker.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 3 << 30) }
        ftruncate(fd, 5 << 30)
        close(fd)
        let p = try await backup(store, [s.sub("sparse")]).point
        #expect(p.point.summary.bytesRead < 1 << 20, "holes are not read")
        #expect(p.point.summary.bytesTotal == 5 << 30)
        let target = s.sub("out")
        _ = try await restore(store, p, to: target)
        var st = stat()
        let out = restored(target, path)
        #expect(stat(out, &st) == 0)
        #expect(st.st_size == 5 << 30)
        #expect(Int(st.st_blocks) * 512 < 16 << 20, "the restored file is sparse too")
        let rfd = open(out, O_RDONLY)
        var back = [UInt8](repeating: 0, count: marker.count)
        _ = back.withUnsafeMutableBytes { pread(rfd, $0.baseAddress, $0.count, 3 << 30) }
        close(rfd)
        #expect(back == marker)
    }

    @Test func aFileThatVanishesIsListedAndTheRestIsCommitted() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/stays", [1, 2])
        let gone = s.write("data/goes", [3, 4])
        let result = try await backup(store, [s.sub("data")]) { o in
            o.hooks.beforeOpen = { path in if String(decoding: path, as: UTF8.self) == gone { unlink(gone) } }
        }
        #expect(result.failures.map(\.path) == [gone])
        #expect(result.failures.first?.reason.contains("vanished") == true)
        let tree = try store.loadTree(result.point.point.root!)
        #expect(tree.nodes.count == 1)
        #expect(try store.index.points().count == 1)
    }

    @Test func aFileChangedWhileReadIsListedAndReadAgainNextTime() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let busy = s.write("data/busy.log", pseudoRandom(50_000, seed: 5))
        let result = try await backup(store, [s.sub("data")]) { o in
            o.hooks.afterRead = { path in
                if String(decoding: path, as: UTF8.self) == busy {
                    let fd = open(busy, O_WRONLY | O_APPEND)
                    _ = write(fd, "more", 4)
                    close(fd)
                }
            }
        }
        #expect(result.failures.first?.reason.contains("changed while") == true)
        let next = try await backup(store, [s.sub("data")])
        #expect(next.failures.isEmpty)
        #expect(next.point.point.summary.bytesRead == 50_004)
    }

    @Test func symlinkLoopsAndSpecialFilesAreKeptAsEntries() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let d = s.sub("special")
        mkdir(d, 0o755)
        symlink("b", d + "/a")
        symlink("a", d + "/b")
        symlink(".", d + "/self")
        mkfifo(d + "/pipe", 0o644)
        let sock = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let sockPath = Array((d + "/sock").utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in for (i, b) in sockPath.enumerated() { buf[i] = b } }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        defer { close(sock) }
        let result = try await backup(store, [d])
        #expect(result.failures.isEmpty)
        let target = s.sub("out")
        let r = try await restore(store, result.point, to: target)
        #expect(r.failures.isEmpty)
        #expect(r.skipped == 1, "the socket is recorded but not re-created")
        let out = restored(target, d)
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: out + "/a")) == "b")
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: out + "/self")) == ".")
        var st = stat()
        #expect(lstat(out + "/pipe", &st) == 0 && (st.st_mode & S_IFMT) == S_IFIFO)
    }
}
