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
