import OutpostCore

/// What `ls` and `find` (and the coming web file browser) show of recovery points: the entries under a path of
/// one point, and the paths of many points that match a glob. Paths are raw bytes, for the caller to print
/// escaped (names come from the store and may hold terminal escape sequences or bytes that are not UTF-8).
public enum PointListing {
    /// Hands `emit` the entry at `path` in `point` when it is not a folder, else every entry below the folder,
    /// depth-first in name order, a folder before its content. `path` is absolute inside the point ("/" for all).
    public static func list(
        _ point: RecoveryPointInfo, path: String, repository: any BlobRepository,
        _ emit: (Node, [UInt8]) throws -> Void
    ) async throws {
        let id = point.id.shortHex
        guard let root = point.point.root else { throw ArchiveError(.damaged, "recovery point \(id) has no root tree") }
        let walker = TreeWalker(repository: repository)
        var tree = try await walker.tree(root)
        var prefix: [UInt8] = []
        func notAFolder(_ path: [UInt8]) -> ArchiveError { ArchiveError(.notFound, "\(Terminal.escaped(bytes: path)) is not a folder") }
        switch try await walker.resolve(path.split(separator: "/").map { Array($0.utf8) }, from: tree) {
        case .top:
            break
        case .missing:
            throw ArchiveError(.notFound, "\(Terminal.escaped(path)) is not in recovery point \(id); list the top with `outpost ls \(id)`")
        case .notAFolder(let path):
            throw notAFolder(path)
        case .node(let node, let path):
            if node.type != .directory { try emit(node, path); return }
            guard let sub = node.subtree else { throw notAFolder(path) }
            tree = try await walker.tree(sub)
            prefix = path
        }
        try await walker.walk(tree, at: prefix) { node, path in
            try emit(node, path)
            return .descend
        }
    }

    /// A path of a recovery point that matched.
    public struct Match: Sendable {
        public let point: RecoveryPointInfo
        public let path: [UInt8]
        public let size: UInt64
    }

    /// Every path of `points` that matches `pattern` (`GlobPattern`), point by point, depth-first in name order.
    public static func find(_ pattern: String, in points: [RecoveryPointInfo], repository: any BlobRepository) async throws -> [Match] {
        let glob = GlobPattern(pattern)
        let walker = TreeWalker(repository: repository)
        // Trees are shared between recovery points. A name pattern's matches in a tree do not depend on where
        // the tree is: they are memoised relative to it, by tree id. A whole-path pattern's matches do.
        var memo: [BlobID: [([UInt8], UInt64)]] = [:]
        var out: [Match] = []
        for point in points {
            guard let root = point.point.root else { continue }
            var found: [([UInt8], UInt64)]
            if !glob.matchesWholePath, let hit = memo[root] {
                found = hit
            } else {
                found = []
                var starts: [Int] = []  // where each folder being walked began in `found`
                try await walker.walk(try await walker.tree(root), at: []) { node, path in
                    if glob.matches(path: path, name: node.name) { found.append((path, node.size)) }
                    guard !glob.matchesWholePath, node.type == .directory, let sub = node.subtree else { return .descend }
                    if let hit = memo[sub] {
                        found += hit.map { (path + $0.0, $0.1) }
                        return .skip
                    }
                    starts.append(found.count)
                    return .descend
                } leave: { sub, path in
                    guard !glob.matchesWholePath else { return }
                    memo[sub] = found[starts.removeLast()...].map { (Array($0.0.dropFirst(path.count)), $0.1) }
                }
                if !glob.matchesWholePath { memo[root] = found }
            }
            out += found.map { Match(point: point, path: $0.0, size: $0.1) }
        }
        return out
    }
}
