import Foundation
import OutpostCore
import OutpostTestSupport
import Synchronization
import Testing

@testable import OutpostArchive

/// A small point: /docs/{a.txt, sub/{b.txt}}, /link, /top.txt.
func sampleRoot(_ repo: MemoryRepository) -> BlobID {
    let sub = repo.put([file("b.txt", size: 2)])
    let docs = repo.put([
        file("a.txt", size: 1),
        Node(name: bytes("sub"), type: .directory, subtree: sub),
    ])
    return repo.put([
        Node(name: bytes("docs"), type: .directory, subtree: docs),
        Node(name: bytes("link"), type: .symlink, linkTarget: bytes("docs")),
        file("top.txt", size: 3),
    ])
}

@Suite struct TreeWalkerTests {
    func text(_ path: [UInt8]) -> String { String(decoding: path, as: UTF8.self) }

    @Test func walksDepthFirstAFolderBeforeItsContent() async throws {
        let repo = MemoryRepository()
        let walker = TreeWalker(repository: repo)
        var visited: [String] = [], left: [String] = []
        try await walker.walk(try await walker.tree(sampleRoot(repo)), at: []) { _, path in
            visited.append(text(path))
            return .descend
        } leave: { _, path in
            left.append(text(path))
        }
        #expect(visited == ["/docs", "/docs/a.txt", "/docs/sub", "/docs/sub/b.txt", "/link", "/top.txt"])
        #expect(left == ["/docs/sub", "/docs"])
    }

    @Test func skipLeavesAFolderOutAndStopEndsTheWalk() async throws {
        let repo = MemoryRepository()
        let walker = TreeWalker(repository: repo)
        let root = try await walker.tree(sampleRoot(repo))
        var visited: [String] = []
        try await walker.walk(root, at: bytes("/base")) { node, path in
            visited.append(text(path))
            return node.name == bytes("sub") ? .skip : .descend
        }
        #expect(visited == ["/base/docs", "/base/docs/a.txt", "/base/docs/sub", "/base/link", "/base/top.txt"])
        visited = []
        var left = 0
        try await walker.walk(root, at: []) { node, path in
            visited.append(text(path))
            return node.name == bytes("a.txt") ? .stop : .descend
        } leave: { _, _ in
            left += 1
        }
        #expect(visited == ["/docs", "/docs/a.txt"])
        #expect(left == 0, "a folder the walk stopped in is not left")
    }

    @Test func resolveFollowsAPathAndSaysWhyNot() async throws {
        let repo = MemoryRepository()
        let walker = TreeWalker(repository: repo)
        let root = try await walker.tree(sampleRoot(repo))
        guard case .top = try await walker.resolve([], from: root) else { Issue.record("no components: the top"); return }
        guard case .node(let b, let path) = try await walker.resolve([bytes("docs"), bytes("sub"), bytes("b.txt")], from: root) else {
            Issue.record("/docs/sub/b.txt is there"); return
        }
        #expect(b.size == 2)
        #expect(text(path) == "/docs/sub/b.txt")
        guard case .missing = try await walker.resolve([bytes("docs"), bytes("nope")], from: root) else { Issue.record("missing"); return }
        guard case .notAFolder(let p) = try await walker.resolve([bytes("top.txt"), bytes("x")], from: root) else {
            Issue.record("a file is not a folder"); return
        }
        #expect(text(p) == "/top.txt")
    }

    @Test func aDamagedTreeIsAnError() async throws {
        let repo = MemoryRepository()
        let id = BlobID.hash([9, 9, 9])
        repo.blobs.withLock { $0[id] = [9, 9, 9] }
        await #expect(throws: (any Error).self) { try await TreeWalker(repository: repo).tree(id) }
    }
}
