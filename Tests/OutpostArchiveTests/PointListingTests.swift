import Foundation
import OutpostCore
import OutpostTestSupport
import Synchronization
import Testing

@testable import OutpostArchive

@Suite struct PointListingTests {
    func list(_ repo: MemoryRepository, _ root: BlobID, _ path: String) async throws -> [String] {
        var out: [String] = []
        try await PointListing.list(repo.point(root), path: path, repository: repo) { _, p in out.append(String(decoding: p, as: UTF8.self)) }
        return out
    }

    @Test func listShowsAFolderDeepOrOneFile() async throws {
        let repo = MemoryRepository()
        let root = sampleRoot(repo)
        #expect(try await list(repo, root, "/") == ["/docs", "/docs/a.txt", "/docs/sub", "/docs/sub/b.txt", "/link", "/top.txt"])
        #expect(try await list(repo, root, "/docs/sub") == ["/docs/sub/b.txt"])
        #expect(try await list(repo, root, "docs//a.txt") == ["/docs/a.txt"], "components as `ls` always split them")
        let missing = await #expect(throws: ArchiveError.self) { try await list(repo, root, "/docs/nope") }
        #expect(missing?.exitCode == .notFound)
        #expect(missing?.message.contains("/docs/nope is not in recovery point") == true)
        let file = await #expect(throws: ArchiveError.self) { try await list(repo, root, "/top.txt/x") }
        #expect(file?.message == "/top.txt is not a folder")
    }

    func find(_ repo: MemoryRepository, _ pattern: String, _ roots: [BlobID]) async throws -> [String] {
        try await PointListing.find(pattern, in: roots.map { repo.point($0) }, repository: repo).map {
            String(decoding: $0.path, as: UTF8.self) + " \($0.size)"
        }
    }

    @Test func aNamePatternMatchesAtAnyDepth() async throws {
        let repo = MemoryRepository()
        #expect(try await find(repo, "*.txt", [sampleRoot(repo)]) == ["/docs/a.txt 1", "/docs/sub/b.txt 2", "/top.txt 3"])
    }

    /// A pattern with a '/' is matched against whole paths, at every depth (before 95f647e, below the top it
    /// was matched against paths that had lost their folder).
    @Test func aPathPatternMatchesWholePathsAtAnyDepth() async throws {
        let repo = MemoryRepository()
        let root = sampleRoot(repo)
        #expect(try await find(repo, "/docs/sub/*", [root]) == ["/docs/sub/b.txt 2"])
        #expect(try await find(repo, "/docs/*.txt", [root]) == ["/docs/a.txt 1", "/docs/sub/b.txt 2"], "fnmatch's * crosses '/'")
        #expect(try await find(repo, "/sub/*", [root]) == [])
    }

    /// Name matches are memoised per tree: a tree shared between points (or places) is read once, and its
    /// matches land under each place it is found.
    @Test func sharedTreesAreReadOnceAndMatchedInEachPlace() async throws {
        let repo = MemoryRepository()
        let shared = repo.put([file("x.doc", size: 5)])
        let root1 = repo.put([
            Node(name: bytes("a"), type: .directory, subtree: shared),
            Node(name: bytes("b"), type: .directory, subtree: shared),
        ])
        let root2 = repo.put([Node(name: bytes("c"), type: .directory, subtree: root1)])
        let found = try await find(repo, "*.doc", [root1, root1, root2])
        #expect(found == ["/a/x.doc 5", "/b/x.doc 5", "/a/x.doc 5", "/b/x.doc 5", "/c/a/x.doc 5", "/c/b/x.doc 5"])
        #expect(repo.loads.withLock { $0.count } == 3, "each tree once")
        #expect(try await find(repo, "/c/*", [root1, root2]) == ["/c/a 0", "/c/a/x.doc 5", "/c/b 0", "/c/b/x.doc 5"])
    }
}
