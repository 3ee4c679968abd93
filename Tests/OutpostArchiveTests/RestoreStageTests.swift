import Foundation
import Logging
import OutpostCore
import OutpostTestSupport
import Testing

@testable import OutpostArchive

#if canImport(Glibc)
    import Glibc
#endif

func makeRestoreTally(_ target: String) -> RestoreTally { RestoreTally(target: target, logger: Logger(label: "test")) { _ in } }

@Suite struct RestorePlannerTests {
    func planner(_ existing: ExistingEntries, _ repo: MemoryRepository = MemoryRepository()) -> RestorePlanner {
        RestorePlanner(existing: existing, trees: TreeWalker(repository: repo))
    }

    @Test func theFilterSelectsIncludedPathsTheirContentAndTheWayDown() {
        let filter = RestorePlanner.Filter(includes: [[bytes("a"), bytes("b")]])
        #expect(filter.decide([bytes("a")]) == .ancestor)
        #expect(filter.decide([bytes("a"), bytes("b")]) == .all)
        #expect(filter.decide([bytes("a"), bytes("b"), bytes("c")]) == .all)
        #expect(filter.decide([bytes("a"), bytes("x")]) == .none)
        #expect(RestorePlanner.Filter(includes: []).decide([bytes("x")]) == .all)
    }

    @Test func anEntryInTheWayIsReplacedSkippedOrRefused() throws {
        #expect(try planner(.overwrite).resolve(conflict: "x") == .replace)
        #expect(try planner(.skip).resolve(conflict: "x") == .skip)
        let e = #expect(throws: ArchiveError.self) { try planner(.refuse).resolve(conflict: "/t/a already exists") }
        #expect(e?.code == .conflict)
        #expect(e?.message == "/t/a already exists")
    }

    @Test func conflictsAreEntriesInTheWayNotFoldersInPlaceOfFolders() async throws {
        let s = Scratch()
        let repo = MemoryRepository()
        let root = try await TreeWalker(repository: repo).tree(sampleRoot(repo))
        s.write("t/docs/sub/b.txt", [1])
        s.write("t/top.txt/inside", [1])  // a folder where a file goes
        s.write("t/other", [1])
        let all = try await planner(.refuse, repo).conflicts(root, target: s.sub("t"), filter: .init(includes: []))
        #expect(all == [s.sub("t/docs/sub/b.txt"), s.sub("t/top.txt")])
        let some = try await planner(.refuse, repo).conflicts(root, target: s.sub("t"), filter: .init(includes: [[bytes("top.txt")]]))
        #expect(some == [s.sub("t/top.txt")])
        let e = await #expect(throws: ArchiveError.self) {
            try await planner(.refuse, repo).refuseConflicts(root, target: s.sub("t"), filter: .init(includes: []))
        }
        #expect(e?.message.contains("already holds 2 of the entries") == true)
        try await planner(.skip, repo).refuseConflicts(root, target: s.sub("t"), filter: .init(includes: []))
    }

    @Test func anIncludedPathMustBeInThePoint() async throws {
        let repo = MemoryRepository()
        let id = sampleRoot(repo)
        let root = try await TreeWalker(repository: repo).tree(id)
        try await planner(.refuse, repo).checkIncludes(.init(includes: [[bytes("docs"), bytes("a.txt")], []]), in: root, point: repo.point(id))
        let e = await #expect(throws: ArchiveError.self) {
            try await planner(.refuse, repo).checkIncludes(.init(includes: [[bytes("top.txt"), bytes("x")]]), in: root, point: repo.point(id))
        }
        #expect(e?.code == .notFound)
        #expect(e?.message.hasPrefix("/top.txt/x is not in recovery point") == true)
    }
}

@Suite struct PendingFileTests {
    @Test func aFileIsWrittenUnderATemporaryNameAndPutInPlaceWithoutReplacing() throws {
        let s = Scratch()
        let dirFD = open(s.path, O_RDONLY | O_DIRECTORY)
        defer { close(dirFD) }
        let file = try PendingFile.create(bytes("f"), in: dirFD)
        #expect(PendingFile.isTemporaryName(file.tempName))
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.path) == [String(decoding: file.tempName, as: UTF8.self)])
        s.write("f", [9])
        try file.close()
        #expect(file.rename(replacing: false) != 0 && errno == EEXIST, "never replaces without --overwrite")
        #expect(file.rename(replacing: true) == 0)
        file.markPlaced()
        file.discard()
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.path) == ["f"])
        #expect(FileManager.default.contents(atPath: s.sub("f")) == Data())
        let dropped = try PendingFile.create(bytes("g"), in: dirFD)
        dropped.discard()
        dropped.discard()
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.path) == ["f"], "a discarded file leaves nothing")
    }

    @Test func temporaryNamesAreExactlyThePrefixAnd16HexDigits() {
        #expect(PendingFile.isTemporaryName(bytes(".outpost-restore-0123456789abcdef")))
        #expect(!PendingFile.isTemporaryName(bytes(".outpost-restore-0123456789ABCDEF")))
        #expect(!PendingFile.isTemporaryName(bytes(".outpost-restore-0123456789abcde")))
        #expect(!PendingFile.isTemporaryName(bytes("outpost-restore-0123456789abcdef0")))
    }

    @Test func onlyLeftoverFilesNotInTheTreeAreRemoved() throws {
        let s = Scratch()
        s.write(".outpost-restore-00000000000000aa", [1])
        s.write(".outpost-restore-00000000000000bb", [2])
        mkdir(s.sub(".outpost-restore-00000000000000cc"), 0o755)
        s.write("keep", [3])
        let dirFD = open(s.path, O_RDONLY | O_DIRECTORY)
        defer { close(dirFD) }
        let tree = Tree(nodes: [file(".outpost-restore-00000000000000bb", size: 1)])
        #expect(PendingFile.removeLeftovers(in: dirFD, keeping: tree) == [bytes(".outpost-restore-00000000000000aa")])
        #expect(
            Set(try FileManager.default.contentsOfDirectory(atPath: s.path))
                == [".outpost-restore-00000000000000bb", ".outpost-restore-00000000000000cc", "keep"])
    }
}

@Suite struct SmallFileGroupTests {
    @Test func aGroupIsFullByChunksBytesOrFiles() {
        var group = SmallFileGroup()
        let folder = OpenFolder(fd: -1, isNew: true) { _ in }
        let id = BlobID.hash([1])
        let fourChunks = Node(name: bytes("f"), type: .file, size: 4, extents: Array(repeating: .chunk(id, length: 1), count: 4))
        let fit = FileWriter.groupChunks / 4
        for _ in 0..<fit { #expect(!group.isFull(adding: fourChunks)); group.add(fourChunks, [], folder) }
        #expect(group.isFull(adding: fourChunks), "\(FileWriter.groupChunks) chunks at most")
        #expect(group.take().count == fit)
        #expect(group.isEmpty)
        #expect(!group.isFull(adding: fourChunks), "taking empties it")
        let big = file("big", size: 4 << 20)
        for _ in 0..<4 { group.add(big, [], folder) }
        #expect(group.isFull(adding: file("one", size: 1)), "16 MiB at most")
        group = SmallFileGroup()
        for _ in 0..<FileWriter.groupFiles { group.add(file("e", size: 0), [], folder) }
        #expect(group.isFull(adding: file("e", size: 0)), "\(FileWriter.groupFiles) files at most")
        #expect(FileWriter.isSmall(file("s", size: 4 << 20)))
        #expect(!FileWriter.isSmall(file("s", size: (4 << 20) + 1)))
    }
}

@Suite struct LinksAndMetadataTests {
    @Test func aHardLinkIsMadeToItsRestoredFirstNameOrWrittenAsACopy() async throws {
        let s = Scratch()
        s.write("t/dir/first", [1, 2])
        let targetFD = open(s.sub("t"), O_RDONLY | O_DIRECTORY)
        defer { close(targetFD) }
        let tally = makeRestoreTally(s.sub("t"))
        let links = LinksAndMetadata(
            options: RestoreOptions(target: s.sub("t")),
            planner: RestorePlanner(existing: .refuse, trees: TreeWalker(repository: MemoryRepository())), tally: tally)
        links.markRestored([bytes("dir"), bytes("first")])
        links.deferHardlink(Node(name: bytes("second"), type: .hardlink, linkTarget: bytes("/dir/first")), parent: [bytes("dir")], parentMtime: nil)
        links.deferHardlink(Node(name: bytes("third"), type: .hardlink, linkTarget: bytes("/dir/not-restored")), parent: [], parentMtime: nil)
        var copied: [String] = []
        try await links.linkHardlinks(targetFD: targetFD) { node, _, comps in
            copied.append(String(decoding: RestoreTally.pointPath(comps), as: UTF8.self) + " " + "\(node.type)")
        }
        var a = stat(), b = stat()
        #expect(lstat(s.sub("t/dir/first"), &a) == 0 && lstat(s.sub("t/dir/second"), &b) == 0)
        #expect(a.st_ino == b.st_ino && a.st_nlink == 2)
        #expect(copied == ["/third file"], "its first name was not restored by this run: a copy")
        #expect(tally.counted.otherEntries == 1)
    }

    @Test func ownerModeXattrsAndTimesAreSetOnAFile() throws {
        let s = Scratch()
        let path = s.write("f", [1], mode: 0o600)
        let tally = makeRestoreTally(s.path)
        let links = LinksAndMetadata(
            options: RestoreOptions(target: s.path, restoreOwnership: false),
            planner: RestorePlanner(existing: .refuse, trees: TreeWalker(repository: MemoryRepository())), tally: tally)
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        links.applyMetadata(Node(name: bytes("f"), type: .file, mode: 0o751, mtimeNanos: 1_500_000_000_000_000_007), fd: fd, components: [bytes("f")])
        #expect(tally.counted.failures.isEmpty)
        var st = stat()
        stat(path, &st)
        #expect(st.st_mode & 0o7777 == 0o751)
        #expect(st.st_mtim.tv_sec == 1_500_000_000 && st.st_mtim.tv_nsec == 7)
    }
}
