import OutpostCore
import Testing

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

private let idA = BlobID.hash(bytes("chunk a"))
private let idB = BlobID.hash(bytes("chunk b"))
private let idSub = BlobID.hash(bytes("subtree"))

/// One node of every type, with the awkward cases: non-UTF-8 and 255-byte names, xattrs, holes.
private func sampleNodes() -> [Node] {
    [
        Node(
            name: bytes("file"), type: .file, mode: 0o4755, uid: 1000, gid: 100, user: bytes("alice"),
            group: bytes("staff"), mtimeNanos: -1_234_567_890, ctimeNanos: 1_700_000_000_123_456_789,
            size: 3000, inode: 42, device: 0xfd01, linkCount: 2,
            xattrs: [
                ExtendedAttribute(name: bytes("user.b"), value: [0, 1, 2, 0xff]),
                ExtendedAttribute(name: bytes("user.a"), value: []),
            ],
            extents: [.chunk(idA, length: 1000), .hole(length: 1500), .chunk(idB, length: 500)]),
        Node(name: bytes("sparse"), type: .file, size: 1 << 40, extents: [.hole(length: 1 << 40)]),
        Node(name: bytes("empty"), type: .file, size: 0),
        Node(name: bytes("dir"), type: .directory, mode: 0o755, subtree: idSub),
        Node(name: bytes("link"), type: .symlink, mode: 0o777, linkTarget: [0x2e, 0x2e, 0x2f, 0xff, 0xfe]),
        Node(
            name: bytes("hard"), type: .hardlink, size: 7, linkCount: 2, linkTarget: bytes("dir/file"),
            extents: [.chunk(idA, length: 7)]),  // hard links carry their extents (docs/format.md §7)
        Node(name: bytes("fifo"), type: .fifo, xattrs: [ExtendedAttribute(name: bytes("user.x"), value: bytes("y"))]),
        Node(name: bytes("sock"), type: .socket),
        Node(name: bytes("tty"), type: .characterDevice, rdev: 0x0501),
        Node(name: bytes("sda"), type: .blockDevice, rdev: 0x0800),
        Node(name: [0xff, 0xfe, 0x41], type: .file, size: 7, extents: [.chunk(idA, length: 7)]),
        Node(name: [UInt8](repeating: 0x78, count: 255), type: .fifo),
    ]
}

/// A tree in exactly the given order (bypasses the sorting of `Tree.init`).
private func unsortedTree(_ nodes: [Node]) -> Tree {
    var tree = Tree(nodes: [])
    tree.nodes = nodes
    return tree
}

@Suite struct TreeTests {
    @Test func roundTripWithEveryNodeType() throws {
        let tree = Tree(nodes: sampleNodes())
        let decoded = try Tree.decode(tree.encode(), id: BlobID.hash(tree.encode()))
        #expect(decoded == tree)
        #expect(decoded.nodes.count == 12)
        let file = try #require(decoded.node(named: bytes("file")))
        #expect(file.extents == [.chunk(idA, length: 1000), .hole(length: 1500), .chunk(idB, length: 500)])
        #expect(file.xattrs.map(\.name) == [bytes("user.b"), bytes("user.a")])  // writer's order kept
        #expect(file.mtimeNanos == -1_234_567_890)
        #expect(decoded.node(named: [0xff, 0xfe, 0x41])?.size == 7)
        #expect(decoded.node(named: [UInt8](repeating: 0x78, count: 255))?.type == .fifo)
        #expect(decoded.node(named: bytes("dir"))?.subtree == idSub)
        #expect(decoded.node(named: bytes("link"))?.linkTarget == [0x2e, 0x2e, 0x2f, 0xff, 0xfe])
        #expect(decoded.node(named: bytes("sda"))?.rdev == 0x0800)
        #expect(decoded.node(named: bytes("hard"))?.extents == [.chunk(idA, length: 7)])
    }

    @Test func emptyTreeRoundTrips() throws {
        let tree = Tree(nodes: [])
        #expect(tree.encode() == [1, 0])
        #expect(try Tree.decode([1, 0]) == tree)
    }

    @Test func goldenEncoding() {
        let node = Node(
            name: bytes("p"), type: .fifo, mode: 0o600, uid: 1000, gid: 100, user: bytes("u"),
            group: bytes("g"), mtimeNanos: 1, ctimeNanos: -1, size: 0, inode: 2, device: 3, linkCount: 1)
        var expected: [UInt8] = [1, 1, 1, 0x70, 4]
        expected += [0x80, 0x01, 0, 0, 0xe8, 0x03, 0, 0, 100, 0, 0, 0]  // mode, uid, gid
        expected += [1, 0x75, 1, 0x67]  // user, group
        expected += [1, 0, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0xff, count: 8)  // mtime, ctime
        expected += [UInt8](repeating: 0, count: 8)  // size
        expected += [2, 0, 0, 0, 0, 0, 0, 0] + [3, 0, 0, 0, 0, 0, 0, 0]  // inode, device
        expected += [1, 0, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 8)  // links, rdev
        expected += [0, 0]  // link target, xattr count
        #expect(Tree(nodes: [node]).encode() == expected)
    }

    @Test func encodingIsDeterministic() {
        let nodes = sampleNodes()
        let a = Tree(nodes: nodes).encode()
        let b = Tree(nodes: nodes.reversed()).encode()
        let c = Tree(nodes: Array(nodes[5...] + nodes[..<5])).encode()
        #expect(a == b)
        #expect(a == c)
        #expect(BlobID.hash(a) == BlobID.hash(b))
        var changed = nodes
        changed[0].mtimeNanos += 1
        #expect(Tree(nodes: changed).encode() != a)
    }

    @Test func initSortsByNameBytes() {
        let names: [[UInt8]] = [[0xff], bytes("b"), bytes("ab"), bytes("a"), bytes("B"), bytes("a b")]
        let tree = Tree(nodes: names.map { Node(name: $0, type: .fifo) })
        #expect(tree.nodes.map(\.name) == [bytes("B"), bytes("a"), bytes("a b"), bytes("ab"), bytes("b"), [0xff]])
    }

    @Test func nodeNamedFindsEveryNodeAndNothingElse() {
        let nodes = sampleNodes()
        let tree = Tree(nodes: nodes)
        for node in nodes {
            #expect(tree.node(named: node.name) == node, "\(node.nameString)")
        }
        for missing in [[], bytes("fil"), bytes("files"), bytes("zzz"), bytes("A"), [0xff]] as [[UInt8]] {
            #expect(tree.node(named: missing) == nil)
        }
        #expect(Tree(nodes: []).node(named: bytes("a")) == nil)
    }

    @Test func directoryWithoutSubtreeDecodesToZeroID() throws {
        let tree = Tree(nodes: [Node(name: bytes("d"), type: .directory)])
        #expect(try Tree.decode(tree.encode()).nodes.first?.subtree == BlobID.zero)
    }

    @Test(
        arguments: [
            [], [0x2e], [0x2e, 0x2e], Array("a/b".utf8), [0x2f], [0x61, 0x00, 0x62], [0x00],
            [UInt8](repeating: 0x61, count: 256),
        ] as [[UInt8]])
    func unsafeNamesAreRejected(_ name: [UInt8]) {
        let encoded = unsortedTree([Node(name: name, type: .fifo)]).encode()
        expectFormatError(.invalidValue) { _ = try Tree.decode(encoded) }
    }

    @Test func dotPrefixedNamesAreAccepted() throws {
        let tree = Tree(nodes: [
            Node(name: bytes("..."), type: .fifo), Node(name: bytes(".a"), type: .fifo),
            Node(name: bytes("..a"), type: .fifo),
        ])
        #expect(try Tree.decode(tree.encode()) == tree)
    }

    /// Issue 8: holes adding up to 2^64 − 2 bytes crashed restore; such a size is refused when the tree is read.
    @Test func extentsBeyondWhatAFileCanHoldAreRejected() {
        let huge = UInt64.max - 1
        let half = Int(huge / 2)
        let node = Node(name: bytes("big"), type: .file, size: huge, extents: [.hole(length: half), .hole(length: half)])
        expectFormatError(.invalidValue) { _ = try Tree.decode(unsortedTree([node]).encode()) }
        let largest = Node(name: bytes("ok"), type: .file, size: UInt64(Int64.max), extents: [.hole(length: Int.max)])
        #expect(throws: Never.self) { _ = try Tree.decode(unsortedTree([largest]).encode()) }
    }

    @Test func duplicateNamesAreRejected() {
        let encoded = unsortedTree([Node(name: bytes("a"), type: .fifo), Node(name: bytes("a"), type: .socket)]).encode()
        expectFormatError(.invalidValue) { _ = try Tree.decode(encoded) }
    }

    @Test func unsortedNamesAreRejected() {
        let encoded = unsortedTree([Node(name: bytes("b"), type: .fifo), Node(name: bytes("a"), type: .fifo)]).encode()
        expectFormatError(.invalidValue) { _ = try Tree.decode(encoded) }
        let prefixLast = unsortedTree([Node(name: bytes("ab"), type: .fifo), Node(name: bytes("a"), type: .fifo)]).encode()
        expectFormatError(.invalidValue) { _ = try Tree.decode(prefixLast) }
    }

    @Test func extentsMustAddUpToSize() {
        for (size, extents) in [
            (10, [Extent.hole(length: 9)]), (10, [.chunk(idA, length: 11)]), (1, []),
            (0, [.hole(length: 1)]),
        ] as [(UInt64, [Extent])] {
            let encoded = Tree(nodes: [Node(name: bytes("f"), type: .file, size: size, extents: extents)]).encode()
            expectFormatError(.invalidValue) { _ = try Tree.decode(encoded) }
        }
        let hardlink = Tree(nodes: [Node(name: bytes("h"), type: .hardlink, size: 10, extents: [.hole(length: 9)])]).encode()
        expectFormatError(.invalidValue) { _ = try Tree.decode(hardlink) }
    }

    @Test func extentOverflowIsRejected() {
        let extents = [Extent](repeating: .hole(length: Int.max), count: 3)
        let encoded = Tree(nodes: [Node(name: bytes("f"), type: .file, size: .max, extents: extents)]).encode()
        expectFormatError(.invalidValue) { _ = try Tree.decode(encoded) }
    }

    @Test func chunkExtentAboveLimitIsRejected() throws {
        let ok = Tree(nodes: [Node(name: bytes("f"), type: .file, size: 1 << 30, extents: [.chunk(idA, length: 1 << 30)])])
        #expect(try Tree.decode(ok.encode()) == ok)
        let big = (1 << 30) + 1
        let encoded = Tree(nodes: [Node(name: bytes("f"), type: .file, size: UInt64(big), extents: [.chunk(idA, length: big)])]).encode()
        expectFormatError(.invalidValue) { _ = try Tree.decode(encoded) }
    }

    @Test func unknownTypeAndExtentKindAreRejected() throws {
        var encoded = Tree(nodes: [Node(name: bytes("a"), type: .file, size: 5, extents: [.hole(length: 5)])]).encode()
        #expect(Array(encoded.prefix(5)) == [1, 1, 1, 0x61, 0])  // version, count, name, type
        #expect(Array(encoded.suffix(3)) == [1, 1, 5])  // extent count, hole, length
        var badType = encoded
        badType[4] = 8
        expectFormatError(.invalidValue) { _ = try Tree.decode(badType) }
        encoded[encoded.count - 2] = 2
        expectFormatError(.invalidValue) { _ = try Tree.decode(encoded) }
    }

    @Test(arguments: [0, 2, 0xff] as [UInt8])
    func wrongVersionIsRejected(_ version: UInt8) {
        var encoded = Tree(nodes: sampleNodes()).encode()
        encoded[0] = version
        expectFormatError(.unsupportedVersion) { _ = try Tree.decode(encoded) }
    }

    @Test func everyTruncationThrows() throws {
        let tree = Tree(nodes: [
            Node(name: bytes("d"), type: .directory, subtree: idSub),
            Node(
                name: bytes("f"), type: .file, size: 12, xattrs: [ExtendedAttribute(name: bytes("user.k"), value: bytes("v"))],
                extents: [.chunk(idA, length: 10), .hole(length: 2)]),
            Node(name: bytes("l"), type: .symlink, linkTarget: bytes("f")),
        ])
        let encoded = tree.encode()
        #expect(try Tree.decode(encoded) == tree)
        for length in 0..<encoded.count {
            #expect(throws: FormatError.self, "prefix of \(length) bytes") { _ = try Tree.decode(Array(encoded.prefix(length))) }
        }
    }

    @Test func trailingBytesAreRejected() {
        let encoded = Tree(nodes: sampleNodes()).encode()
        expectFormatError(.invalidValue) { _ = try Tree.decode(encoded + [0]) }
        expectFormatError(.invalidValue) { _ = try Tree.decode([1, 0, 0]) }
    }

    @Test func hostileCountsDoNotAllocate() {
        // A count far above the bytes left is refused before anything is reserved.
        var w = BinaryWriter()
        w.u8(1)
        w.varint(UInt64.max >> 1)
        expectFormatError(.invalidValue) { _ = try Tree.decode(w.bytes) }
    }
}
