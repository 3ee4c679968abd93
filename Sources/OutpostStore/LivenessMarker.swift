import Foundation
import GRDB
import OutpostCore

/// gc's mark phase: every blob reachable from a set of root trees. Roots are the committed points' trees (a
/// tree of theirs that cannot be read stops gc: liveness is then unknown, and nothing may be deleted), and the
/// trees pushes in flight rely on — forgotten points' within the grace, trees touched within the grace — whose
/// blobs not indexed yet (in a pack still being written) are simply not there to delete.
struct LivenessMarker {
    let store: Store
    private(set) var live = Set<BlobID>()
    /// Trees whose entries are marked. Apart from `live`: a tree not indexed when first reached is kept but not
    /// read, and is read when it shows up later (a push sealed it meanwhile).
    private var expanded = Set<BlobID>()
    /// Trees read by `markTrees` (their chunks not marked): apart from `expanded`, so that a tree a point needs
    /// whole is still read for its chunks when a trees-only root reached it first.
    private var treesExpanded = Set<BlobID>()

    init(store: Store) { self.store = store }

    mutating func insert(_ id: BlobID) { live.insert(id) }

    /// Whether the tree's entries are marked.
    func hasExpanded(_ tree: BlobID) -> Bool { expanded.contains(tree) }

    /// Marks the roots and all they reach, reading trees through the index's reader connections.
    mutating func mark(_ roots: [BlobID], required: Bool) throws {
        let store = self.store
        try mark(roots, required: required) { id in try store.index.location(of: id) }
    }

    /// The same inside gc's own write transaction (the pool's readers may not be used from there).
    mutating func mark(_ roots: [BlobID], required: Bool, in db: Database) throws {
        try mark(roots, required: required) { id in try StoreIndex.location(db, of: id) }
    }

    private mutating func mark(_ roots: [BlobID], required: Bool, locate: (BlobID) throws -> BlobLocation?) throws {
        var stack = roots.filter { !expanded.contains($0) }
        while let id = stack.popLast() {
            guard !expanded.contains(id) else { continue }
            live.insert(id)
            guard let loc = try locate(id) else {
                if !required { continue }
                throw StoreError(
                    .corrupt,
                    "tree \(id.shortHex) of a recovery point is not in the store; gc stopped without deleting anything — run `outpost check`")
            }
            let tree: Tree
            do { tree = try Tree.decode(try read(id, at: loc), id: id) } catch {
                throw StoreError(
                    .corrupt, "tree \(id.shortHex) cannot be read (\(error)); gc stopped without deleting anything — run `outpost check --read-data`")
            }
            expanded.insert(id)
            for node in tree.nodes {
                if let sub = node.subtree, !expanded.contains(sub) { stack.append(sub) }
                for e in node.extents { if case .chunk(let c, _) = e { live.insert(c) } }
            }
        }
    }

    /// Marks the trees under `roots`, not their chunks: the catalog of points the vault holds that left the relay
    /// (a vault-tier restore and vault retention walk them here). A tree missing or unreadable is passed over:
    /// it can be fetched from the vault again.
    mutating func markTrees(_ roots: [BlobID]) throws {
        var stack = roots
        while let id = stack.popLast() {
            guard treesExpanded.insert(id).inserted else { continue }
            guard let loc = try store.index.location(of: id), let plain = try? read(id, at: loc), let tree = try? Tree.decode(plain, id: id)
            else { continue }
            live.insert(id)
            for node in tree.nodes { if let sub = node.subtree, node.type == .directory { stack.append(sub) } }
        }
    }

    /// A tree's plaintext, verified against its id; no second look-up (a gc's own batch never moves it).
    private func read(_ id: BlobID, at loc: BlobLocation) throws -> [UInt8] {
        let stored = try store.readers.read(path: store.layout.packPath(loc.packName), offset: loc.offset, count: loc.storedLength)
        return try store.decompressors.with { d in
            try stored.withUnsafeBytes {
                try PreparedBlob.open(
                    stored: $0, id: id, compression: loc.compression, rawLength: loc.rawLength,
                    decompressor: d, what: "tree \(id.shortHex) in pack \(loc.packName)")
            }
        }
    }
}
