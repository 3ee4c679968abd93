import COutpostSystem
import Foundation
import OutpostCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// File-system helpers: raw-byte paths, lstat into `Node`, xattrs, owner names.
enum FS {
    static func lstat(_ path: [UInt8]) -> (stat, Int32) {
        var st = stat()
        let r = withCPath(path) { Glibc.lstat($0, &st) }
        return (st, r == 0 ? 0 : errno)
    }

    /// lstat of an entry of an open directory: no path component is looked up again.
    static func lstat(at dirFD: Int32, _ name: [UInt8]) -> (stat, Int32) {
        var st = stat()
        let r = withCPath(name) { fstatat(dirFD, $0, &st, AT_SYMLINK_NOFOLLOW) }
        return (st, r == 0 ? 0 : errno)
    }

    static func withCPath<R>(_ path: [UInt8], _ body: (UnsafePointer<CChar>) -> R) -> R {
        var z = path
        z.append(0)
        return z.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) } }
    }

    static func display(_ path: [UInt8]) -> String { String(decoding: path, as: UTF8.self) }

    static func join(_ dir: [UInt8], _ name: [UInt8]) -> [UInt8] {
        if dir == [0x2f] { return dir + name }
        return dir + [0x2f] + name
    }

    /// Entry names of an open directory (raw bytes), sorted, without `.` and `..`.
    static func listDirectory(_ dirFD: Int32) throws(Errno) -> [[UInt8]] {
        let listFD = dup(dirFD)
        guard listFD >= 0 else { throw Errno(errno) }
        guard let dir = fdopendir(listFD) else { let e = errno; close(listFD); throw Errno(e) }
        defer { closedir(dir) }
        rewinddir(dir)  // the duplicate shares its position with `dirFD`
        var names: [[UInt8]] = []
        errno = 0
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: &ent.pointee.d_name) { p in
                p.withMemoryRebound(to: UInt8.self, capacity: 256) {
                    Array(UnsafeBufferPointer(start: $0, count: strlen(UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))))
                }
            }
            if name == [0x2e] || name == [0x2e, 0x2e] { continue }
            names.append(name)
        }
        if errno != 0 { throw Errno(errno) }
        return names.sorted { $0.lexicographicallyPrecedes($1) }
    }

    static func type(of st: stat) -> NodeType? {
        switch st.st_mode & S_IFMT {
        case S_IFREG: .file
        case S_IFDIR: .directory
        case S_IFLNK: .symlink
        case S_IFIFO: .fifo
        case S_IFSOCK: .socket
        case S_IFCHR: .characterDevice
        case S_IFBLK: .blockDevice
        default: nil
        }
    }

    static func nanos(_ ts: timespec) -> Int64 { Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec) }

    static func timespec(nanos: Int64) -> timespec {
        var s = nanos / 1_000_000_000, n = nanos % 1_000_000_000
        if n < 0 { n += 1_000_000_000; s -= 1 }
        return Glibc.timespec(tv_sec: Int(s), tv_nsec: Int(n))
    }

    static func readLink(at dirFD: Int32, _ name: [UInt8]) throws(Errno) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = withCPath(name) { p in
            buf.withUnsafeMutableBufferPointer {
                readlinkat(dirFD, p, UnsafeMutableRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), 4096)
            }
        }
        if n < 0 { throw Errno(errno) }
        return Array(buf[0..<n])
    }

    static func xattrs(_ path: [UInt8]) -> [ExtendedAttribute] {
        withCPath(path) { p -> [ExtendedAttribute] in
            let size = outpost_llistxattr(p, nil, 0)
            guard size > 0 else { return [] }
            var names = [CChar](repeating: 0, count: size)
            let got = outpost_llistxattr(p, &names, size)
            guard got > 0 else { return [] }
            var out: [ExtendedAttribute] = []
            var start = 0
            for i in 0..<got where names[i] == 0 {
                let name = names[start..<i].map { UInt8(bitPattern: $0) }
                start = i + 1
                guard !name.isEmpty else { continue }
                let value: [UInt8]? = withCPath(name) { n in
                    let vs = outpost_lgetxattr(p, n, nil, 0)
                    guard vs >= 0 else { return nil }
                    var v = [UInt8](repeating: 0, count: vs)
                    let r = v.withUnsafeMutableBytes { outpost_lgetxattr(p, n, $0.baseAddress, vs) }
                    return r >= 0 ? Array(v[0..<r]) : nil
                }
                if let value { out.append(ExtendedAttribute(name: name, value: value)) }
            }
            return out.sorted { $0.name.lexicographicallyPrecedes($1.name) }
        }
    }

    /// Lexically normalises a user-given path to an absolute path (no `.`/`..`/`//`), without following links.
    static func absolute(_ path: String) -> String {
        var p = path
        if !p.hasPrefix("/") { p = FileManager.default.currentDirectoryPath + "/" + p }
        var parts: [Substring] = []
        for c in p.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(c)
        }
        return "/" + parts.joined(separator: "/")
    }
}

/// An open directory shared by the walker and the jobs of its files: entries are examined and opened relative
/// to it (`fstatat`, `openat` with O_NOFOLLOW), so a path component swapped for a symlink after the scan cannot
/// send a read elsewhere. Closed when the last job holding it is done.
final class DirectoryHandle: Sendable {
    let fd: Int32

    init(fd: Int32) { self.fd = fd }

    /// Opens `name` in `parent` without following a link; nil with errno set when that fails.
    static func open(_ name: [UInt8], in parent: DirectoryHandle) -> DirectoryHandle? {
        let fd = FS.withCPath(name) { openat(parent.fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        return fd < 0 ? nil : DirectoryHandle(fd: fd)
    }

    deinit { close(fd) }
}

struct Errno: Error {
    let code: Int32
    init(_ code: Int32) { self.code = code }
    var message: String { String(cString: strerror(code)) }
}

/// Caches uid → user name and gid → group name (and back) for the life of a job: each look-up reads
/// /etc/passwd or /etc/group and may try nscd (on a restore of 10,000 files that was a third of the system calls).
final class OwnerNames: Sendable {
    private let users = Memo<UInt32, [UInt8]>()
    private let groups = Memo<UInt32, [UInt8]>()
    private let uids = Memo<[UInt8], UInt32?>()
    private let gids = Memo<[UInt8], UInt32?>()

    func user(_ uid: UInt32) -> [UInt8] {
        users.value(for: uid) {
            var pw = passwd(), result: UnsafeMutablePointer<passwd>?
            var buf = [CChar](repeating: 0, count: 4096)
            guard getpwuid_r(uid, &pw, &buf, buf.count, &result) == 0, result != nil, let p = pw.pw_name else { return [] }
            return Array(String(cString: p).utf8)
        }
    }

    func group(_ gid: UInt32) -> [UInt8] {
        groups.value(for: gid) {
            var gr = Glibc.group(), result: UnsafeMutablePointer<Glibc.group>?
            var buf = [CChar](repeating: 0, count: 4096)
            guard getgrgid_r(gid, &gr, &buf, buf.count, &result) == 0, result != nil, let p = gr.gr_name else { return [] }
            return Array(String(cString: p).utf8)
        }
    }

    /// The uid this machine gives the user name (nil: unknown here).
    func uid(named name: [UInt8]) -> UInt32? { uids.value(for: name) { Self.uid(named: name) } }

    func gid(named name: [UInt8]) -> UInt32? { gids.value(for: name) { Self.gid(named: name) } }

    static func uid(named name: [UInt8]) -> UInt32? {
        guard !name.isEmpty else { return nil }
        var pw = passwd(), result: UnsafeMutablePointer<passwd>?
        var buf = [CChar](repeating: 0, count: 4096)
        let r = FS.withCPath(name) { getpwnam_r($0, &pw, &buf, buf.count, &result) }
        return r == 0 && result != nil ? pw.pw_uid : nil
    }

    static func gid(named name: [UInt8]) -> UInt32? {
        guard !name.isEmpty else { return nil }
        var gr = Glibc.group(), result: UnsafeMutablePointer<Glibc.group>?
        var buf = [CChar](repeating: 0, count: 4096)
        let r = FS.withCPath(name) { getgrnam_r($0, &gr, &buf, buf.count, &result) }
        return r == 0 && result != nil ? gr.gr_gid : nil
    }
}

/// Values computed once per key and kept (a look-up may run twice when two workers ask at once; both agree).
private final class Memo<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private let known = Mutex<[Key: Value]>([:])

    func value(for key: Key, _ compute: () -> Value) -> Value {
        if let v = known.withLock({ $0[key] }) { return v }
        let v = compute()
        known.withLock { $0[key] = v }
        return v
    }
}
