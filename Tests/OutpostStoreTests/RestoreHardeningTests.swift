import Foundation
@testable import OutpostArchive
import OutpostCore
import OutpostStore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Restores of damaged or hostile recovery points, and restores that are interrupted (issue 8).
@Suite struct RestoreHardeningTests {
    /// A recovery point whose root tree holds `nodes`.
    func commit(_ store: Store, _ nodes: [Node]) throws -> RecoveryPointInfo {
        let root = try store.saveBlob(kind: .tree, plaintext: Tree(nodes: nodes).encode())
        let point = RecoveryPoint(machine: "m1", hostname: "h", paths: ["/"], startedAt: Date(), finishedAt: Date(),
                                  rootTree: root, parent: nil, summary: BackupSummary())
        return try store.commit(point)
    }

    /// Two holes of 2^63−1 bytes add up to 2^64−2: the tree decodes (the sum fits a u64 and equals the size), but
    /// no offset in the file can reach that far. Before the fix the restore trapped on the Int64 sum.
    @Test func extentsThatAddUpToMoreThanAFileCanHoldFailThatFileOnly() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let content = Array("kept".utf8)
        let chunk = try store.saveBlob(kind: .data, plaintext: content)
        let huge = Node(name: Array("huge".utf8), type: .file, size: UInt64.max - 1, extents: [.hole(length: Int.max), .hole(length: Int.max)])
        let tail = Node(name: Array("tail".utf8), type: .file, size: UInt64(Int.max) + 1,
                        extents: [.chunk(chunk, length: content.count), .hole(length: Int.max - content.count + 1)])
        let fine = Node(name: Array("fine".utf8), type: .file, size: UInt64(content.count), extents: [.chunk(chunk, length: content.count)])
        // The point decodes: the damage is only visible when offsets are computed.
        let info = try commit(store, [huge, tail, fine])
        let target = s.sub("out")
        let r = try await restore(store, info, to: target)
        #expect(Set(r.failures.map(\.path)) == [target + "/huge", target + "/tail"])
        for f in r.failures {
            #expect(f.reason.contains("recovery point is damaged"), "\(f.reason)")
            #expect(f.reason.contains(f.path), "the message names the file: \(f.reason)")
        }
        #expect(FileManager.default.contents(atPath: target + "/fine").map { Array($0) } == content)
    }

    @Test func layoutChecksEverySum() throws {
        let id = ChunkID.hash([1, 2, 3])
        let ok = Node(name: [0x61], type: .file, size: 10, extents: [.hole(length: 4), .chunk(id, length: 6)])
        #expect(try Restorer.layout(ok, path: "/a").map { [$0.1, Int64($0.2)] } == [[4, 6]])
        let tooBig = Node(name: [0x61], type: .file, size: UInt64(Int64.max) + 1, extents: [])
        #expect(throws: ArchiveError.self) { try Restorer.layout(tooBig, path: "/a") }
        let mismatch = Node(name: [0x61], type: .file, size: 11, extents: [.hole(length: 4), .chunk(id, length: 6)])
        let e = #expect(throws: ArchiveError.self) { try Restorer.layout(mismatch, path: "/a") }
        #expect(e?.code == .damaged)
        #expect(e?.exitCode == .corruptData)
    }
}

/// Special files (FIFOs, device nodes, symlinks) get their owner, mode and times without following a name that
/// someone swapped after it was created.
@Suite struct RestoreSpecialFileTests {
    func restore(_ store: Store, _ point: RecoveryPointInfo, to target: String,
                 afterCreate: @escaping @Sendable ([[UInt8]]) -> Void) async throws -> RestoreResult {
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
        let info = try store.commit(RecoveryPoint(machine: "m1", hostname: "h", paths: ["/"], startedAt: Date(), finishedAt: Date(),
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
