import Foundation
import OutpostCore
import OutpostStore

/// How much of the store no recovery point in the catalog needs any more: about what `outpost store gc` frees
/// (a little less: gc leaves packs younger than its grace period, and packs with less garbage than its repack
/// threshold). Read-only, so it runs beside a serving relay; `relay prune` reports it after removing points.
public struct ReclaimableSpace: Sendable, Encodable, Equatable {
    /// Blobs no recovery point reaches.
    public var blobs = 0
    /// Their stored bytes, with their pack headers.
    public var bytes: Int64 = 0

    /// Marks what the catalog's points reach (their records, trees and chunks), leaving out the points in
    /// `without` (the ones a dry run would remove), and sums the rest. A tree that cannot be read stops the
    /// estimate: what it reaches is unknown.
    public static func estimate(store: Store, without: Set<BlobID> = []) throws -> ReclaimableSpace {
        var live = Set<BlobID>()
        var stack: [BlobID] = []
        for info in try store.index.points() where !without.contains(info.id) {
            live.insert(info.id)
            if let root = info.point.root { stack.append(root) }
        }
        while let id = stack.popLast() {
            guard live.insert(id).inserted else { continue }
            let tree: Tree
            do { tree = try store.loadTree(id) } catch {
                throw StoreError(.corrupt, "tree \(id.shortHex) cannot be read (\(error)); run `outpost relay check --read-data`")
            }
            for node in tree.nodes {
                if let sub = node.subtree { stack.append(sub) }
                for e in node.extents { if case .chunk(let c, _) = e { live.insert(c) } }
            }
        }
        var out = ReclaimableSpace()
        for b in try store.index.allBlobs() where !live.contains(b.id) {
            out.blobs += 1
            out.bytes += Int64(b.storedLength + PackFormat.blobHeaderSize)
        }
        return out
    }
}
