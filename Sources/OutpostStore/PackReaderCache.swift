import Foundation
import OutpostCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Open pack files for positional reads, shared by restore workers. A cached descriptor stays open until its pack
/// is evicted (deleted) or the cache goes, so that no reader ever uses a descriptor another thread closed; once
/// `capacity` packs are cached, further reads open and close their own.
final class PackReaderCache: Sendable {
    static let capacity = 256
    private let fds = Mutex<[String: Int32]>([:])

    deinit { fds.withLock { for (_, fd) in $0 { close(fd) } } }

    func read(path: String, offset: Int, count: Int) throws -> [UInt8] {
        let (fd, cached) = try descriptor(path)
        defer { if !cached { close(fd) } }
        return try FileIO.readExactly(fd, offset: offset, count: count, path: path)
    }

    private func descriptor(_ path: String) throws -> (Int32, cached: Bool) {
        if let fd = fds.withLock({ $0[path] }) { return (fd, true) }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { throw StoreError(.corrupt, "pack \(path) is missing; run `outpost check` to see what is affected") }
            throw StoreError.system(errno, "opening pack", path)
        }
        return fds.withLock { map in
            if let existing = map[path] { close(fd); return (existing, true) }
            if map.count >= Self.capacity { return (fd, false) }
            map[path] = fd
            return (fd, true)
        }
    }

    func evict(_ path: String) {
        fds.withLock { if let fd = $0.removeValue(forKey: path) { close(fd) } }
    }
}
