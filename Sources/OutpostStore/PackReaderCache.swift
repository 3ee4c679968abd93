import Foundation
import OutpostCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Open pack files for positional reads, shared by restore workers. A descriptor is closed only when no read
/// uses it (each read counts itself in and out), so that no reader ever uses a descriptor another thread closed;
/// once `capacity` packs are cached, further reads open and close their own.
///
/// An online gc, in this process or another, deletes packs while the store is open: a deleted pack's
/// descriptor would keep its space allocated. So each time a pack joins the cache (when the cache is full, at
/// most once a second), the cached descriptors of packs deleted since are dropped (`fstat` says no link is
/// left); gc in this process evicts them at once.
final class PackReaderCache: Sendable {
    static let capacity = 256

    private struct Entry {
        var fd: Int32
        var users: Int
    }

    private struct State: ~Copyable {
        var open: [String: Entry] = [:]
        /// Descriptors evicted while reads were using them, with how many: closed by the last one out.
        var retired: [Int32: Int] = [:]
        /// When deleted packs were last looked for (monotonic nanoseconds).
        var lastSweep: UInt64 = 0
    }

    private let state = Mutex(State())

    deinit {
        state.withLock { s in
            for (_, e) in s.open { close(e.fd) }
            for (fd, _) in s.retired { close(fd) }
        }
    }

    func read(path: String, offset: Int, count: Int) throws -> [UInt8] {
        let (fd, cached) = try acquire(path)
        defer { release(path, fd, cached: cached) }
        return try FileIO.readExactly(fd, offset: offset, count: count, path: path)
    }

    private func acquire(_ path: String) throws -> (Int32, cached: Bool) {
        let hit: Int32? = state.withLock { s in
            guard var e = s.open[path] else { return nil }
            e.users += 1
            s.open[path] = e
            return e.fd
        }
        if let hit { return (hit, true) }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { throw StoreError(.corrupt, "pack \(path) is missing; run `outpost check` to see what is affected") }
            throw StoreError.system(errno, "opening pack", path)
        }
        let result: (Int32, Bool) = state.withLock { s in
            // Each pack that joins the cache looks; a full cache (every read of another pack opens its own)
            // looks at most once a second.
            let now = DispatchTime.now().uptimeNanoseconds
            if s.open.count < Self.capacity || now &- s.lastSweep > 1_000_000_000 {
                Self.dropDeleted(&s)
                s.lastSweep = now
            }
            if var e = s.open[path] {
                close(fd)
                e.users += 1
                s.open[path] = e
                return (e.fd, true)
            }
            if s.open.count >= Self.capacity { return (fd, false) }
            s.open[path] = Entry(fd: fd, users: 1)
            return (fd, true)
        }
        return result
    }

    private func release(_ path: String, _ fd: Int32, cached: Bool) {
        guard cached else { close(fd); return }
        state.withLock { s in
            if var e = s.open[path], e.fd == fd {
                e.users -= 1
                s.open[path] = e
            } else if let n = s.retired[fd] {
                if n <= 1 { s.retired[fd] = nil; close(fd) } else { s.retired[fd] = n - 1 }
            }
        }
    }

    /// Forgets a pack's descriptor (its pack was deleted); closed now, or by the last read still using it.
    func evict(_ path: String) {
        state.withLock { Self.evict(path, in: &$0) }
    }

    private static func evict(_ path: String, in s: inout State) {
        guard let e = s.open.removeValue(forKey: path) else { return }
        if e.users == 0 { close(e.fd) } else { s.retired[e.fd] = e.users }
    }

    /// Under the lock, so that no descriptor checked here is closed (and its number reused) meanwhile.
    private static func dropDeleted(_ s: inout State) {
        var deleted: [String] = []
        for (path, e) in s.open {
            var st = stat()
            if fstat(e.fd, &st) == 0 && st.st_nlink == 0 { deleted.append(path) }
        }
        for path in deleted { evict(path, in: &s) }
    }

    /// How many descriptors are cached (for tests).
    var count: Int { state.withLock { $0.open.count } }
}
