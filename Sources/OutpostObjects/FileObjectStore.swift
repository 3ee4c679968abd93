import Foundation
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// Objects as files under a root directory. Writes are atomic and durable: temp file, fsync, link into place
/// (link fails if the key exists: put-if-absent without a race), fsync the directory.
public struct FileObjectStore: ObjectStore {
    public let root: String

    public init(root: String) throws {
        let r = DirectoryPath.normalized(root)
        self.root = r
        try FileManager.default.createDirectory(atPath: r + "/.tmp", withIntermediateDirectories: true)
    }

    private func path(_ key: String) -> String { root + "/" + key }

    private func fail(_ err: Int32, _ action: String, _ p: String) -> ObjectStoreError {
        if err == ENOSPC || err == EDQUOT {
            return ObjectStoreError(.diskFull, "the disk holding \(root) is full (\(action) \(p)); free space there")
        }
        return ObjectStoreError(.io, "\(action) \(p) failed: \(String(cString: strerror(err)))")
    }

    public func putIfAbsent(_ key: String, _ bytes: [UInt8]) throws -> Bool {
        try ObjectKey.validate(key)
        let final = path(key)
        if access(final, F_OK) == 0 { return false }
        let dir = (final as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tmp = root + "/.tmp/" + UUID().uuidString
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd < 0 { throw fail(errno, "creating", tmp) }
        defer { unlink(tmp) }
        var done = 0
        let err: Int32 = bytes.withUnsafeBytes { buf in
            while done < buf.count {
                let n = write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 { if errno == EINTR { continue }; return errno }
                done += n
            }
            return fsync(fd) == 0 ? 0 : errno
        }
        close(fd)
        if err != 0 { throw fail(err, "writing", tmp) }
        if link(tmp, final) != 0 {
            if errno == EEXIST { return false }
            throw fail(errno, "linking into place", final)
        }
        let dfd = open(dir, O_RDONLY | O_DIRECTORY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
        return true
    }

    public func get(_ key: String) throws -> [UInt8]? {
        try ObjectKey.validate(key)
        guard let d = FileManager.default.contents(atPath: path(key)) else { return nil }
        return Array(d)
    }

    public func get(_ key: String, range: Range<Int>) throws -> [UInt8]? {
        try ObjectKey.validate(key)
        let fd = open(path(key), O_RDONLY | O_CLOEXEC)
        if fd < 0 { if errno == ENOENT { return nil }; throw fail(errno, "opening", path(key)) }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let lo = max(0, min(range.lowerBound, Int(st.st_size))), hi = max(lo, min(range.upperBound, Int(st.st_size)))
        var out = [UInt8](repeating: 0, count: hi - lo)
        let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, hi - lo, off_t(lo)) }
        if n < 0 { throw fail(errno, "reading", path(key)) }
        return Array(out[0..<n])
    }

    public func list(prefix: String) throws -> [ObjectInfo] {
        var out: [ObjectInfo] = []
        guard let e = FileManager.default.enumerator(atPath: root) else { return [] }
        while let rel = e.nextObject() as? String {
            if rel.hasPrefix(".tmp") { e.skipDescendants(); continue }
            guard rel.hasPrefix(prefix) || prefix.hasPrefix(rel + "/") || prefix.isEmpty else {
                if !prefix.hasPrefix(rel) { e.skipDescendants() }
                continue
            }
            var st = stat()
            if lstat(path(rel), &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, rel.hasPrefix(prefix) {
                out.append(ObjectInfo(key: rel, size: Int(st.st_size)))
            }
        }
        return out.sorted { $0.key < $1.key }
    }

    public func delete(_ key: String) throws {
        try ObjectKey.validate(key)
        if unlink(path(key)) != 0 && errno != ENOENT { throw fail(errno, "deleting", path(key)) }
    }
}

/// For unit tests: the same semantics in memory.
public final class MemoryObjectStore: ObjectStore, @unchecked Sendable {
    private let lock = NSLock()
    private var objects: [String: [UInt8]] = [:]

    public init() {}

    public func putIfAbsent(_ key: String, _ bytes: [UInt8]) throws -> Bool {
        try ObjectKey.validate(key)
        return lock.withLock {
            if objects[key] != nil { return false }
            objects[key] = bytes
            return true
        }
    }

    public func get(_ key: String) throws -> [UInt8]? {
        try ObjectKey.validate(key)
        return lock.withLock { objects[key] }
    }

    public func get(_ key: String, range: Range<Int>) throws -> [UInt8]? {
        guard let all = try get(key) else { return nil }
        let lo = max(0, min(range.lowerBound, all.count)), hi = max(lo, min(range.upperBound, all.count))
        return Array(all[lo..<hi])
    }

    public func list(prefix: String) throws -> [ObjectInfo] {
        lock.withLock { objects.filter { $0.key.hasPrefix(prefix) }.map { ObjectInfo(key: $0.key, size: $0.value.count) }.sorted { $0.key < $1.key } }
    }

    public func delete(_ key: String) throws {
        try ObjectKey.validate(key)
        lock.withLock { _ = objects.removeValue(forKey: key) }
    }
}
