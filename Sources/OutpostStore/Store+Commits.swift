import Foundation
import Logging
import OutpostCore

/// Adding recovery points to the catalog and removing them, safely beside an online gc (docs/format.md §13).
extension Store {
    /// Records a recovery point: its record blob is written and every pack sealed first, then one transaction.
    ///
    /// `contentChecked`: the caller (the relay) has just checked, and so touched, every blob the point names.
    /// Otherwise the store makes sure here: it touches the root tree, after which any gc keeps everything the
    /// tree reaches; and if a gc deleted blobs since the store was opened, it checks the whole point first.
    public func commit(_ point: RecoveryPoint, contentChecked: Bool = false) throws -> RecoveryPointInfo {
        let id = try saveBlob(kind: .point, plaintext: point.encoded())
        try flush()
        // The record must be in a sealed, indexed pack: another caller's failed seal may have dropped it.
        guard try index.location(of: id) != nil else {
            throw StoreError(
                .io,
                "the record of recovery point \(id.shortHex) could not be stored in \(layout.root) (a pack failed to seal: check the free space and health of its disk); nothing was committed — run the job again"
            )
        }
        if !contentChecked { try requireContent(of: point) }
        try index.commitPoint(id: id, point: point)
        return RecoveryPointInfo(id: id, point: point)
    }

    /// Records a recovery point whose record blob (and everything it needs) is already saved under `id`,
    /// e.g. when a relay is rebuilt from the vault. Keeps the original id.
    public func adopt(pointID id: BlobID, record: RecoveryPoint) throws -> RecoveryPointInfo {
        try flush()
        guard try !index.touch([id]).isEmpty else {
            throw StoreError(.notFound, "recovery point record \(id.shortHex) is not in the store; it must be saved before it is adopted")
        }
        if let root = record.root { _ = try index.touch([root]) }
        try index.commitPoint(id: id, point: record)
        return RecoveryPointInfo(id: id, point: record)
    }

    /// Removes a recovery point from the catalog. Its data goes at a gc once the gc's grace period has passed
    /// since the forget (a push that started before may still build on it): the index records every deletion of
    /// a point, by whatever path, in `forgotten_points`.
    public func forget(_ id: BlobID) throws {
        try index.deletePoint(id)
    }

    /// Makes sure every blob the point names is indexed, and stays so until the commit lands.
    func requireContent(of point: RecoveryPoint) throws {
        guard let root = point.root else { return }
        guard try !index.touch([root]).isEmpty else { throw gone("its root tree \(root.shortHex)") }
        // Touched: from now on every gc keeps what the root reaches. What a gc deleted before is seen below.
        guard try index.gcGeneration() != gcGenerationAtOpen else { return }
        logger.info("a gc deleted blobs while the job ran; checking the recovery point's content before it is committed")
        var seen = Set<BlobID>()
        var stack = [root]
        while let tid = stack.popLast() {
            guard seen.insert(tid).inserted else { continue }
            guard let loc = try index.location(of: tid) else { throw gone("tree \(tid.shortHex)") }
            let tree: Tree
            do { tree = try Tree.decode(try load(tid, at: loc), id: tid) } catch let e as FormatError { throw StoreError(.corrupt, e.message) }
            var chunks = Set<BlobID>()
            for node in tree.nodes {
                if let sub = node.subtree, node.type == .directory { stack.append(sub) }
                for e in node.extents { if case .chunk(let c, _) = e { chunks.insert(c) } }
            }
            if let missing = try unindexed(Array(chunks), touching: false).first { throw gone("chunk \(missing.shortHex)") }
        }
    }

    private func gone(_ what: String) -> StoreError {
        StoreError(
            .notFound,
            "the recovery point cannot be committed: \(what), which it names, is not in the store \(layout.root) (a gc removed it while the job ran); nothing was committed — run the job again"
        )
    }
}
