import COutpostSystem
import Foundation
import OutpostArchive
import OutpostCore
import OutpostStore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A scratch directory removed when the test ends.
public final class Scratch {
    public let path: String

    public init(_ name: String = #function) {
        var base = ProcessInfo.processInfo.environment["OUTPOST_TEST_TMP"] ?? NSTemporaryDirectory()
        while base.hasSuffix("/") { base.removeLast() }
        let clean = name.filter { $0.isLetter || $0.isNumber }
        path = base + "/outpost-test-\(clean)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    public func sub(_ name: String) -> String { path + "/" + name }

    @discardableResult
    public func write(_ rel: String, _ bytes: [UInt8], mode: mode_t = 0o644) -> String {
        let p = sub(rel)
        try! FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: p, contents: Data(bytes))
        chmod(p, mode)
        return p
    }
}

/// Deterministic pseudo-random bytes (splitmix64).
public func pseudoRandom(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    var out = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        z ^= z >> 31
        for b in 0..<8 where i < count { out[i] = UInt8(truncatingIfNeeded: z >> (8 * UInt64(b))); i += 1 }
    }
    return out
}

/// A store with small chunks and packs so that tests exercise many chunks and packs quickly.
public func makeStore(_ scratch: Scratch, packTarget: Int = 256 << 10) throws -> Store {
    let config = StoreConfiguration(
        id: "test", createdAt: Date(),
        chunker: ChunkerParameters(minSize: 4096, averageSize: 16384, maxSize: 65536),
        compressionLevel: 3, packTargetSize: packTarget)
    return try Store.initialize(at: scratch.sub("store"), config: config)
}

public func backup(
    _ store: Store, machine: String = "m1", _ paths: [String], excludes: [String] = [],
    configure: (inout BackupOptions) -> Void = { _ in }
) async throws -> BackupResult {
    var options = BackupOptions(machine: machine, paths: paths, exclusions: ExclusionList(excludes), workers: 3)
    configure(&options)
    return try await Archiver(repository: LocalRepository(store: store), options: options).run()
}

public func restore(
    _ store: Store, _ point: RecoveryPointInfo, to target: String, include: [String] = [],
    existing: ExistingEntries = .refuse
) async throws -> RestoreResult {
    try await Restorer(
        repository: LocalRepository(store: store), point: point,
        options: RestoreOptions(target: target, include: include, existing: existing, workers: 3)
    ).run()
}

/// Differences between two trees: content, type, mode, mtime, symlink targets, xattrs, hardlink structure.
public func differences(_ a: String, _ b: String) -> [String] {
    var out: [String] = []
    func xattrs(_ p: String) -> [String: [UInt8]] {
        var result: [String: [UInt8]] = [:]
        let size = outpost_llistxattr(p, nil, 0)
        guard size > 0 else { return [:] }
        var names = [CChar](repeating: 0, count: size)
        _ = outpost_llistxattr(p, &names, size)
        for name in String(decoding: names.map { UInt8(bitPattern: $0) }, as: UTF8.self).split(separator: "\0") {
            var v = [UInt8](repeating: 0, count: 4096)
            let n = outpost_lgetxattr(p, String(name), &v, 4096)
            if n >= 0 { result[String(name)] = Array(v[0..<n]) }
        }
        return result
    }
    func walk(_ rel: String) {
        let pa = a + rel, pb = b + rel
        var sa = stat(), sb = stat()
        guard lstat(pa, &sa) == 0 else { out.append("\(rel): missing in source"); return }
        guard lstat(pb, &sb) == 0 else { out.append("\(rel): missing in restore"); return }
        if sa.st_mode != sb.st_mode { out.append("\(rel): mode \(String(sa.st_mode, radix: 8)) vs \(String(sb.st_mode, radix: 8))") }
        if (sa.st_mode & S_IFMT) != S_IFLNK && (sa.st_mtim.tv_sec != sb.st_mtim.tv_sec || sa.st_mtim.tv_nsec != sb.st_mtim.tv_nsec) {
            out.append("\(rel): mtime differs")
        }
        if sa.st_nlink != sb.st_nlink && (sa.st_mode & S_IFMT) != S_IFDIR { out.append("\(rel): link count \(sa.st_nlink) vs \(sb.st_nlink)") }
        if xattrs(pa) != xattrs(pb) { out.append("\(rel): xattrs differ") }
        switch sa.st_mode & S_IFMT {
        case S_IFREG:
            if FileManager.default.contents(atPath: pa) != FileManager.default.contents(atPath: pb) { out.append("\(rel): content differs") }
        case S_IFLNK:
            if (try? FileManager.default.destinationOfSymbolicLink(atPath: pa)) != (try? FileManager.default.destinationOfSymbolicLink(atPath: pb)) {
                out.append("\(rel): link target differs")
            }
        case S_IFDIR:
            let na = ((try? FileManager.default.contentsOfDirectory(atPath: pa)) ?? []).sorted()
            let nb = ((try? FileManager.default.contentsOfDirectory(atPath: pb)) ?? []).sorted()
            if na != nb { out.append("\(rel): entries \(na) vs \(nb)") }
            for n in na where nb.contains(n) { walk(rel + "/" + n) }
        default:
            break
        }
    }
    walk("")
    return out
}

/// Where a backed-up absolute path lands under a restore target.
public func restored(_ target: String, _ original: String) -> String { target + original }

/// The node at an absolute path inside a recovery point.
public func node(_ store: Store, _ point: RecoveryPointInfo, _ path: String) throws -> Node {
    var tree = try store.loadTree(point.point.root!)
    let comps = path.split(separator: "/").map { Array($0.utf8) }
    for (i, c) in comps.enumerated() {
        let n = try #require(tree.node(named: c))
        if i == comps.count - 1 { return n }
        tree = try store.loadTree(n.subtree!)
    }
    throw StoreError(.notFound, path)
}

/// The chunks of a file node, in order.
public func chunkIDs(_ n: Node) -> [BlobID] {
    n.extents.compactMap { if case .chunk(let id, _) = $0 { id } else { nil } }
}
