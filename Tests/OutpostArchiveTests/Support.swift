import COutpostSystem
import Foundation
import OutpostArchive
import OutpostCore
import OutpostStore
import OutpostTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A repository in memory, for the stages' unit tests: it keeps plaintexts, counts what it is asked and saved,
/// and commits nothing durable.
final class MemoryRepository: BlobRepository {
    let blobs = Mutex<[BlobID: [UInt8]]>([:])
    let saves = Mutex<[[BlobID]]>([])
    let loads = Mutex<[BlobID]>([])
    var chunkerParameters: ChunkerParameters { ChunkerParameters(minSize: 4096, averageSize: 16384, maxSize: 65536) }
    var compressionLevel: Int32 { 3 }

    /// Stores a tree of `nodes` and returns its id.
    @discardableResult
    func put(_ nodes: [Node]) -> BlobID {
        let bytes = Tree(nodes: nodes).encode()
        let id = BlobID.hash(bytes)
        blobs.withLock { $0[id] = bytes }
        return id
    }

    func missing(_ ids: [BlobID]) async throws -> Set<BlobID> {
        blobs.withLock { have in Set(ids.filter { have[$0] == nil }) }
    }

    func save(_ blobs: [PreparedBlob]) async throws -> SaveStats {
        saves.withLock { $0.append(blobs.map(\.id)) }
        var stats = SaveStats()
        for b in blobs {
            let plain = try b.stored.withUnsafeBytes {
                try PreparedBlob.open(
                    stored: $0, id: b.id, compression: b.compression, rawLength: b.rawLength,
                    decompressor: ZstdDecompressor(), what: "blob")
            }
            let added = self.blobs.withLock { $0.updateValue(plain, forKey: b.id) == nil }
            if added { stats.blobs += 1; stats.rawBytes += Int64(b.rawLength); stats.storedBytes += Int64(b.stored.count) }
        }
        return stats
    }

    func load(_ id: BlobID, kind: BlobKind) async throws -> [UInt8] {
        loads.withLock { $0.append(id) }
        guard let b = blobs.withLock({ $0[id] }) else { throw ArchiveError(.notFound, "blob \(id.shortHex) is not in the test repository") }
        return b
    }

    func latestPoint(machine: String) async throws -> RecoveryPointInfo? { nil }

    func commit(_ point: RecoveryPoint) async throws -> RecoveryPointInfo {
        RecoveryPointInfo(id: BlobID.hash(Array(point.rootTree.utf8)), point: point)
    }

    /// A recovery point whose root tree is `root`.
    func point(_ root: BlobID, machine: String = "m1") -> RecoveryPointInfo {
        let p = RecoveryPoint(
            machine: machine, hostname: "h", paths: ["/"], startedAt: Date(), finishedAt: Date(),
            rootTree: root, parent: nil, summary: BackupSummary())
        return RecoveryPointInfo(id: BlobID.hash(Array((machine + root.hex).utf8)), point: p)
    }
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// A file node of `size` bytes (one hole, so that its tree decodes).
func file(_ name: String, size: Int) -> Node {
    Node(name: bytes(name), type: .file, size: UInt64(size), extents: size > 0 ? [.hole(length: size)] : [])
}
