import Foundation
import OutpostArchive
import OutpostCore
import OutpostStore
import OutpostTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct RestoreSafetyTests {
    @Test func existingFilesAreRefusedBeforeAnythingIsWritten() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/a", [1])
        s.write("data/b", [2])
        let p = try await backup(store, [s.sub("data")]).point
        let target = s.sub("out")
        let existing = restored(target, s.sub("data/b"))
        try FileManager.default.createDirectory(atPath: (existing as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: existing, contents: Data([9, 9]))
        let e = await #expect(throws: ArchiveError.self) { try await restore(store, p, to: target) }
        #expect(e?.code == .conflict)
        #expect(e?.exitCode == .refused)
        #expect(e?.message.contains("--overwrite") == true)
        #expect(FileManager.default.contents(atPath: existing) == Data([9, 9]))
        #expect(!FileManager.default.fileExists(atPath: restored(target, s.sub("data/a"))), "nothing is written when refusing")
    }

    @Test func skipKeepsExistingAndOverwriteReplaces() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/a", [1])
        s.write("data/b", [2])
        let p = try await backup(store, [s.sub("data")]).point
        let target = s.sub("out")
        let b = restored(target, s.sub("data/b"))
        try FileManager.default.createDirectory(atPath: (b as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: b, contents: Data([9]))
        let skipped = try await restore(store, p, to: target, existing: .skip)
        #expect(skipped.skipped == 1)
        #expect(FileManager.default.contents(atPath: b) == Data([9]))
        #expect(FileManager.default.contents(atPath: restored(target, s.sub("data/a"))) == Data([1]))
        _ = try await restore(store, p, to: target, existing: .overwrite)
        #expect(FileManager.default.contents(atPath: b) == Data([2]))
    }

    @Test func onlyTheNamedPathsAreRestored() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/x/one", [1])
        s.write("data/y/two", [2])
        let p = try await backup(store, [s.sub("data")]).point
        let target = s.sub("out")
        _ = try await restore(store, p, to: target, include: [s.sub("data/y/two")])
        #expect(FileManager.default.contents(atPath: restored(target, s.sub("data/y/two"))) == Data([2]))
        #expect(!FileManager.default.fileExists(atPath: restored(target, s.sub("data/x"))))
        let missing = await #expect(throws: ArchiveError.self) { try await restore(store, p, to: s.sub("out2"), include: ["/no/such/path"]) }
        #expect(missing?.code == .notFound)
    }

    @Test func aSymlinkInTheTargetIsNotFollowed() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        s.write("data/sub/file", [1, 2, 3])
        let p = try await backup(store, [s.sub("data")]).point
        let outside = s.sub("outside")
        mkdir(outside, 0o755)
        let target = s.sub("out")
        let subInTarget = restored(target, s.sub("data/sub"))
        try FileManager.default.createDirectory(atPath: (subInTarget as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        symlink(outside, subInTarget)
        _ = try await restore(store, p, to: target, existing: .overwrite)
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty, "nothing may be written through the link")
        #expect(FileManager.default.contents(atPath: subInTarget + "/file") == Data([1, 2, 3]))
    }

    /// A hostile store: a hard link whose "first occurrence" is a file outside the target.
    @Test func aHostileHardlinkCannotReachOutsideTheTarget() async throws {
        let s = Scratch()
        let store = try makeStore(s)
        let victim = s.write("victim", Array("secret".utf8))
        let content: [UInt8] = Array("payload".utf8)
        let chunk = try store.saveBlob(kind: .data, plaintext: content)
        let evil = Node(
            name: Array("evil".utf8), type: .hardlink, mode: 0o644, size: UInt64(content.count),
            linkTarget: Array(victim.utf8), extents: [.chunk(chunk, length: content.count)])
        let root = try store.saveBlob(kind: .tree, plaintext: Tree(nodes: [evil]).encode())
        let point = RecoveryPoint(
            machine: "m1", hostname: "h", paths: ["/"], startedAt: Date(), finishedAt: Date(),
            rootTree: root, parent: nil, summary: BackupSummary())
        let info = try store.commit(point)
        let target = s.sub("out")
        _ = try await restore(store, info, to: target)
        var st = stat()
        stat(victim, &st)
        #expect(st.st_nlink == 1, "no link to a file outside the target")
        #expect(FileManager.default.contents(atPath: target + "/evil").map { Array($0) } == content)
        #expect(FileManager.default.contents(atPath: victim) == Data("secret".utf8))
    }

    @Test func unsafeNamesNeverDecode() throws {
        for name in [".", "..", "a/b", ""] {
            var w = BinaryWriter()
            w.u8(Tree.formatVersion)
            w.varint(1)
            w.data(Array(name.utf8))
            let e = #expect(throws: FormatError.self) { try Tree.decode(w.bytes) }
            #expect(e?.code == .invalidValue || e?.code == .truncated)
        }
    }
}
