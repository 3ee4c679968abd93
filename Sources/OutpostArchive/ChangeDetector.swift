import OutpostCore

/// Decides which files must be read, against the machine's previous recovery point (the parent): a file whose
/// size, mtime, ctime and inode match its node there keeps that node's extents and is not read.
struct ChangeDetector: Sendable {
    let trees: TreeWalker

    /// The parent's tree of a folder. Nil when there is none, or when it cannot be read: then everything under
    /// the folder is read again, which costs time but never correctness.
    func previousTree(_ id: BlobID?) async -> Tree? {
        guard let id else { return nil }
        return try? await trees.tree(id)
    }

    /// The parent's trees of several folders in one request (a folder's subfolders): from a relay, fetching
    /// them one by one made a no-change backup of 900 folders cost 900 round trips. Those that cannot be read
    /// are left out (`previousTree` then tries them alone).
    func previousTrees(_ ids: [BlobID]) async -> [BlobID: Tree] {
        guard ids.count > 1 else { return [:] }
        return (try? await trees.trees(ids)) ?? [:]
    }

    enum Verdict {
        /// The parent's copy stands: its extents are the file's content.
        case unchanged([Extent])
        /// The parent has a file of that name, but it changed.
        case changed
        /// The parent has no file of that name.
        case new
    }

    /// `node` as the scan found it; `previous` its namesake in the parent's folder.
    static func verdict(for node: Node, previous: Node?) -> Verdict {
        guard let prev = previous, prev.type == .file else { return .new }
        if prev.size == node.size, prev.mtimeNanos == node.mtimeNanos, prev.ctimeNanos == node.ctimeNanos, prev.inode == node.inode {
            return .unchanged(prev.extents)
        }
        return .changed
    }

    /// The parent's tree of a sub-folder: only a folder's (a file or link of that name had none).
    static func previousSubtree(of previous: Node?) -> BlobID? {
        previous?.type == .directory ? previous?.subtree : nil
    }
}
