import OutpostCore

/// Reads a recovery point's trees through a `BlobRepository`: the one place a tree is loaded, a path followed
/// and a point walked, for `ls`, `find`, the restore and the change detection of a backup. Paths are raw bytes
/// (names need not be UTF-8): a node's path is its folder's path, `/` and its name.
public struct TreeWalker: Sendable {
    public let repository: any BlobRepository

    public init(repository: any BlobRepository) { self.repository = repository }

    /// One tree, decoded and checked (names safe to create, sizes in range).
    public func tree(_ id: BlobID) async throws -> Tree {
        try Tree.decode(try await repository.load(id, kind: .tree), id: id)
    }

    /// Several trees, fetched together (one round trip per `WireFormat.maxFetchBlobs` from a relay), each decoded
    /// and checked; by id.
    public func trees(_ ids: [BlobID]) async throws -> [BlobID: Tree] {
        var out: [BlobID: Tree] = [:]
        let unique = Array(Set(ids))
        var start = 0
        while start < unique.count {
            let slice = Array(unique[start..<min(unique.count, start + WireFormat.maxFetchBlobs)])
            for (id, bytes) in zip(slice, try await repository.loadMany(slice)) { out[id] = try Tree.decode(bytes, id: id) }
            start += slice.count
        }
        return out
    }

    /// Where a path leads from a tree.
    public enum Resolution: Sendable {
        /// No components: the tree itself.
        case top
        /// The node the last component names, and its path.
        case node(Node, path: [UInt8])
        /// A component names nothing in its folder.
        case missing
        /// A component before the last is not a folder (or a folder without a tree); its path.
        case notAFolder(path: [UInt8])
    }

    /// Follows `components` down from `root`, loading only the trees on the way.
    public func resolve(_ components: [[UInt8]], from root: Tree) async throws -> Resolution {
        var tree = root
        var path: [UInt8] = []
        for (i, c) in components.enumerated() {
            guard let node = tree.node(named: c) else { return .missing }
            path += [0x2f] + node.name
            if i == components.count - 1 { return .node(node, path: path) }
            guard node.type == .directory, let sub = node.subtree else { return .notAFolder(path: path) }
            tree = try await self.tree(sub)
        }
        return .top
    }

    /// What a walk does after visiting a node.
    public enum Step: Sendable {
        /// Go into the node if it is a folder, then on.
        case descend
        /// Go on with the next node, not into this one.
        case skip
        /// End the walk.
        case stop
    }

    /// Visits the nodes of `tree` and of every folder below it depth-first, in name order, a folder before its
    /// content; `prefix` is the tree's own path. `visit` decides whether to go into a folder; `leave` is called
    /// with a folder's subtree id and path when its content has been visited (not when the walk stopped in it).
    public func walk(
        _ tree: Tree, at prefix: [UInt8], visit: (Node, [UInt8]) throws -> Step,
        leave: (BlobID, [UInt8]) throws -> Void = { _, _ in }
    ) async throws {
        _ = try await walkNodes(tree, at: prefix, visit: visit, leave: leave)
    }

    /// False: the walk was stopped.
    private func walkNodes(
        _ tree: Tree, at prefix: [UInt8], visit: (Node, [UInt8]) throws -> Step,
        leave: (BlobID, [UInt8]) throws -> Void
    ) async throws -> Bool {
        for node in tree.nodes {
            let path = prefix + [0x2f] + node.name
            switch try visit(node, path) {
            case .stop: return false
            case .skip: continue
            case .descend:
                guard node.type == .directory, let sub = node.subtree else { continue }
                guard try await walkNodes(try await self.tree(sub), at: path, visit: visit, leave: leave) else { return false }
                try leave(sub, path)
            }
        }
        return true
    }
}
