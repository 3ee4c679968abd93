/// The type of a tree entry. Stored as one byte: never renumber.
public enum NodeType: UInt8, Sendable, Codable, CustomStringConvertible {
    case file = 0, directory = 1, symlink = 2, hardlink = 3, fifo = 4, socket = 5, characterDevice = 6, blockDevice = 7

    public var description: String {
        switch self {
        case .file: "file"
        case .directory: "dir"
        case .symlink: "symlink"
        case .hardlink: "hardlink"
        case .fifo: "fifo"
        case .socket: "socket"
        case .characterDevice: "chardev"
        case .blockDevice: "blockdev"
        }
    }
}

/// One piece of a file's content: a stored chunk, or a hole (a run of zeros the file system does not store).
public enum Extent: Sendable, Equatable {
    case chunk(BlobID, length: Int)
    case hole(length: Int)

    public var length: Int {
        switch self {
        case .chunk(_, let l), .hole(let l): l
        }
    }
}

/// An extended attribute; names and values are raw bytes.
public struct ExtendedAttribute: Sendable, Equatable {
    public var name: [UInt8]
    public var value: [UInt8]
    public init(name: [UInt8], value: [UInt8]) { self.name = name; self.value = value }
}

/// One entry of a directory as it was backed up. Names and link targets are raw bytes, so non-UTF-8 names
/// round-trip exactly.
public struct Node: Sendable, Equatable {
    public var name: [UInt8]
    public var type: NodeType
    /// Permission and special bits (`st_mode & 0o7777`).
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var user: [UInt8]
    public var group: [UInt8]
    public var mtimeNanos: Int64
    public var ctimeNanos: Int64
    public var size: UInt64
    public var inode: UInt64
    public var device: UInt64
    public var linkCount: UInt64
    /// `st_rdev` of device nodes.
    public var rdev: UInt64
    /// A symlink's target, or for a hardlink the path (inside the recovery point) of its first occurrence.
    public var linkTarget: [UInt8]
    public var xattrs: [ExtendedAttribute]
    /// Files: the content, in order.
    public var extents: [Extent]
    /// Directories: the id of the directory's own tree.
    public var subtree: BlobID?

    public init(
        name: [UInt8], type: NodeType, mode: UInt32 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0,
        user: [UInt8] = [], group: [UInt8] = [], mtimeNanos: Int64 = 0, ctimeNanos: Int64 = 0,
        size: UInt64 = 0, inode: UInt64 = 0, device: UInt64 = 0, linkCount: UInt64 = 1, rdev: UInt64 = 0,
        linkTarget: [UInt8] = [], xattrs: [ExtendedAttribute] = [], extents: [Extent] = [], subtree: BlobID? = nil
    ) {
        self.name = name; self.type = type; self.mode = mode; self.uid = uid; self.gid = gid
        self.user = user; self.group = group; self.mtimeNanos = mtimeNanos; self.ctimeNanos = ctimeNanos
        self.size = size; self.inode = inode; self.device = device; self.linkCount = linkCount; self.rdev = rdev
        self.linkTarget = linkTarget; self.xattrs = xattrs; self.extents = extents; self.subtree = subtree
    }

    public var nameString: String { String(decoding: name, as: UTF8.self) }

    /// A name is safe to create inside a directory: not empty, not `.` or `..`, no `/` and no NUL.
    public static func isSafeName(_ name: [UInt8]) -> Bool {
        !name.isEmpty && name.count <= 255 && name != [0x2e] && name != [0x2e, 0x2e]
            && !name.contains(0x2f) && !name.contains(0)
    }
}

/// A directory's entries, sorted by name bytes with no duplicates. Encoded as a content-addressed blob of
/// kind `.tree`, so an unchanged directory encodes to the same id and costs nothing in the next recovery point.
///
/// Encoding, version 1 (docs/format.md, "Tree objects"): u8 version | varint count | nodes, each:
/// name | u8 type | u32 mode | u32 uid | u32 gid | user | group | i64 mtime ns | i64 ctime ns | u64 size |
/// u64 inode | u64 device | u64 links | u64 rdev | link target | varint xattr count, (name, value)… |
/// then for a directory a 32-byte subtree id, for a file or hard link varint extent count and extents
/// (u8 0, 32-byte id, varint length | u8 1, varint hole length). Byte strings are varint length + bytes.
public struct Tree: Sendable, Equatable {
    public static let formatVersion: UInt8 = 1
    public var nodes: [Node]

    public init(nodes: [Node]) {
        self.nodes = nodes.sorted { $0.name.lexicographicallyPrecedes($1.name) }
    }

    public func node(named name: [UInt8]) -> Node? {
        var lo = 0, hi = nodes.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if nodes[mid].name == name { return nodes[mid] }
            if nodes[mid].name.lexicographicallyPrecedes(name) { lo = mid + 1 } else { hi = mid }
        }
        return nil
    }

    public func encode() -> [UInt8] {
        var w = BinaryWriter(capacity: 64 + nodes.count * 128)
        w.u8(Self.formatVersion)
        w.varint(nodes.count)
        for n in nodes {
            w.data(n.name)
            w.u8(n.type.rawValue)
            w.u32(n.mode); w.u32(n.uid); w.u32(n.gid)
            w.data(n.user); w.data(n.group)
            w.i64(n.mtimeNanos); w.i64(n.ctimeNanos)
            w.u64(n.size); w.u64(n.inode); w.u64(n.device); w.u64(n.linkCount); w.u64(n.rdev)
            w.data(n.linkTarget)
            w.varint(n.xattrs.count)
            for x in n.xattrs { w.data(x.name); w.data(x.value) }
            switch n.type {
            case .directory:
                w.id(n.subtree ?? BlobID(w0: 0, w1: 0, w2: 0, w3: 0))
            case .file, .hardlink:
                w.varint(n.extents.count)
                for e in n.extents {
                    switch e {
                    case .chunk(let id, let len): w.u8(0); w.id(id); w.varint(len)
                    case .hole(let len): w.u8(1); w.varint(len)
                    }
                }
            default:
                break
            }
        }
        return w.bytes
    }

    private static func add(_ total: UInt64, _ len: Int, _ what: String) throws -> UInt64 {
        let (sum, overflow) = total.addingReportingOverflow(UInt64(len))
        if overflow { throw FormatError(.invalidValue, "\(what) holds a file whose extents overflow 64 bits") }
        return sum
    }

    /// Decodes and validates: names must be safe and strictly increasing, so that a damaged or hostile tree
    /// cannot name `..`, a path with `/`, or the same entry twice.
    public static func decode(_ bytes: [UInt8], id: BlobID? = nil) throws -> Tree {
        let what = "tree \(id?.shortHex ?? "object")"
        var r = BinaryReader(bytes, what: what)
        let version = try r.u8()
        guard version == formatVersion else {
            throw FormatError(
                .unsupportedVersion, "\(what) has format version \(version); this outpost reads version \(formatVersion): upgrade outpost")
        }
        let count = try r.count(max: r.remaining)
        var nodes: [Node] = []
        nodes.reserveCapacity(count)
        for _ in 0..<count {
            let name = try r.data(max: 4096)
            guard Node.isSafeName(name) else {
                throw FormatError(.invalidValue, "\(what) holds an unsafe entry name \(String(decoding: name, as: UTF8.self).debugDescription)")
            }
            if let last = nodes.last, !last.name.lexicographicallyPrecedes(name) {
                throw FormatError(
                    .invalidValue, "\(what) holds entries out of order or twice (\(String(decoding: name, as: UTF8.self).debugDescription))")
            }
            guard let type = NodeType(rawValue: try r.u8()) else {
                throw FormatError(.invalidValue, "\(what) holds an entry of unknown type")
            }
            var n = Node(name: name, type: type)
            n.mode = try r.u32(); n.uid = try r.u32(); n.gid = try r.u32()
            n.user = try r.data(max: 1024); n.group = try r.data(max: 1024)
            n.mtimeNanos = try r.i64(); n.ctimeNanos = try r.i64()
            n.size = try r.u64(); n.inode = try r.u64(); n.device = try r.u64(); n.linkCount = try r.u64(); n.rdev = try r.u64()
            n.linkTarget = try r.data(max: 65536)
            let xc = try r.count(max: 65536)
            for _ in 0..<xc { n.xattrs.append(ExtendedAttribute(name: try r.data(max: 1024), value: try r.data(max: 1 << 20))) }
            switch type {
            case .directory:
                n.subtree = try r.id()
            case .file, .hardlink:
                let ec = try r.count(max: r.remaining)
                n.extents.reserveCapacity(ec)
                var total: UInt64 = 0
                for _ in 0..<ec {
                    switch try r.u8() {
                    case 0:
                        let cid = try r.id()
                        let len = try r.count(max: 1 << 30)
                        n.extents.append(.chunk(cid, length: len)); total = try Self.add(total, len, what)
                    case 1:
                        let len = try r.count(max: Int.max)
                        n.extents.append(.hole(length: len)); total = try Self.add(total, len, what)
                    default:
                        throw FormatError(.invalidValue, "\(what) holds an unknown extent kind in \(n.nameString.debugDescription)")
                    }
                }
                guard total == n.size else {
                    throw FormatError(
                        .invalidValue, "\(what): the extents of \(n.nameString.debugDescription) add up to \(total) bytes, its size is \(n.size)")
                }
                // No file offset reaches past 2^63 − 1 (off_t): such a size is damage, refused before a restore
                // computes offsets with it.
                guard total <= UInt64(Int64.max) else {
                    throw FormatError(.invalidValue, "\(what): \(n.nameString.debugDescription) claims \(total) bytes, more than a file can hold")
                }
            default:
                break
            }
            nodes.append(n)
        }
        guard r.isAtEnd else { throw FormatError(.invalidValue, "\(what) has \(r.remaining) trailing bytes") }
        var t = Tree(nodes: [])
        t.nodes = nodes
        return t
    }
}
