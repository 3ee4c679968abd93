import FuzzSupport
import OutpostCore

/// Tree objects (docs/format.md, "Tree objects"), read from the store, from the relay by a restoring client and
/// from the vault by `relay rebuild`. Whatever `Tree.decode` accepts must re-encode to a tree that decodes to the
/// same value, keep its names safe and sorted (restore relies on it), and be searchable by name.
///
/// Input: the tree object's bytes.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTree(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = Fuzz.bytes(data, size)
    guard let tree = try? Tree.decode(input, id: BlobID.hash(input)) else { return 0 }
    Fuzz.expect((try? Tree.decode(tree.encode())) == tree, "a decoded tree does not survive encode + decode")
    for (i, node) in tree.nodes.enumerated() {
        Fuzz.expect(Node.isSafeName(node.name), "an accepted tree holds an unsafe name")
        if i > 0 { Fuzz.expect(tree.nodes[i - 1].name.lexicographicallyPrecedes(node.name), "an accepted tree is not sorted") }
        Fuzz.expect(tree.node(named: node.name) == node, "node(named:) does not find an entry of an accepted tree")
        if node.type == .file || node.type == .hardlink {
            // Restore sums the extents into the file's size: the decoder promised they add up without overflow.
            var total: UInt64 = 0
            for e in node.extents {
                let (sum, overflow) = total.addingReportingOverflow(UInt64(e.length))
                Fuzz.expect(!overflow, "an accepted tree's extents overflow")
                total = sum
            }
            Fuzz.expect(total == node.size, "an accepted tree's extents do not add up to the size")
        }
    }
    return 0
}

@_cdecl("FuzzTree_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    Fuzz.main(argc, argv, fuzzTree)
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?)
    -> CInt
{
    Fuzz.writeSeedsIfAsked {
        let c1 = BlobID.hash(Fuzz.text(100, seed: 1)), c2 = BlobID.hash(Fuzz.text(100, seed: 2))
        let sub = BlobID.hash(Array("subtree".utf8))
        let full = Tree(nodes: [
            Node(
                name: Array("file.txt".utf8), type: .file, mode: 0o644, uid: 1000, gid: 1000, user: Array("alice".utf8), group: Array("staff".utf8),
                mtimeNanos: 1_700_000_000_000_000_000, ctimeNanos: 1_700_000_000_000_000_001, size: 300, inode: 42, device: 2049, linkCount: 1,
                xattrs: [ExtendedAttribute(name: Array("user.note".utf8), value: Array("hi".utf8))],
                extents: [.chunk(c1, length: 100), .hole(length: 100), .chunk(c2, length: 100)]),
            Node(name: Array("dir".utf8), type: .directory, mode: 0o755, subtree: sub),
            Node(name: Array("link".utf8), type: .symlink, mode: 0o777, linkTarget: Array("file.txt".utf8)),
            Node(
                name: Array("hard".utf8), type: .hardlink, size: 300, linkCount: 2, linkTarget: Array("file.txt".utf8),
                extents: [.chunk(c1, length: 100), .hole(length: 100), .chunk(c2, length: 100)]),
            Node(name: Array("fifo".utf8), type: .fifo),
            Node(name: Array("sock".utf8), type: .socket),
            Node(name: Array("tty".utf8), type: .characterDevice, rdev: 0x0501),
            Node(name: Array("sda".utf8), type: .blockDevice, rdev: 0x0800),
            Node(name: [0xff, 0xfe, 0x41], type: .file, size: 0),
        ])
        let sparse = Tree(nodes: [Node(name: Array("sparse".utf8), type: .file, size: 1 << 40, extents: [.hole(length: 1 << 40)])])
        return [
            ("tree-full", full.encode()),
            ("tree-empty", Tree(nodes: []).encode()),
            ("tree-sparse", sparse.encode()),
            ("tree-dir", Tree(nodes: [Node(name: Array("only".utf8), type: .directory, subtree: sub)]).encode()),
        ]
    }
    return 0
}
