import Foundation
import OutpostCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Thin, throwing wrappers over the system calls the store needs: durable writes and positional reads.
enum FileIO {
    static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.system(errno, "writing", path)
            }
            done += n
        }
    }

    static func readExactly(_ fd: Int32, offset: Int, count: Int, path: String) throws -> [UInt8] {
        var failure: Int32 = 0
        var short = false
        let out = [UInt8](unsafeUninitializedCapacity: count) { buf, filled in
            var done = 0
            while done < count {
                let n = pread(fd, buf.baseAddress! + done, count - done, off_t(offset + done))
                if n < 0 { if errno == EINTR { continue }; failure = errno; break }
                if n == 0 { short = true; break }
                done += n
            }
            filled = done
        }
        if failure != 0 { throw StoreError.system(failure, "reading", path) }
        if short {
            throw StoreError(
                .corrupt,
                "\(path) is shorter than the index says (wanted \(count) bytes at offset \(offset)): the pack is truncated; run `outpost check --read-data` to see what is affected"
            )
        }
        return out
    }

    static func fsync(_ fd: Int32, path: String) throws {
        if Glibc.fsync(fd) != 0 { throw StoreError.system(errno, "syncing", path) }
    }

    static func fsyncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY)
        if fd < 0 { throw StoreError.system(errno, "opening directory", path) }
        defer { close(fd) }
        try fsync(fd, path: path)
    }

    /// Writes a small file atomically and durably: temp file, fsync, rename, fsync the directory.
    static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws {
        do { try DurableFile.write(bytes, to: path, mode: mode) } catch { throw StoreError.system(error.errno, error.step, error.path) }
    }

    static func fileSize(_ path: String) -> Int? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int(st.st_size)
    }

    static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw StoreError.system(errno, "creating directory", path) }
    }
}

/// An advisory lock on the store (flock on `STORE/lock`): jobs that add data share it, jobs that delete data
/// (gc, rebuild-index) hold it alone.
public final class StoreLock: Sendable {
    private let fd: Int32
    private let exclusive: Atomic<Bool>

    /// The mode held now (`store init` holds the exclusive lock, then a shared one).
    public var mode: Mode { exclusive.load(ordering: .acquiring) ? .exclusive : .shared }

    public enum Mode: Sendable { case shared, exclusive }

    init(path: String, mode: Mode, what: String) throws {
        exclusive = Atomic(mode == .exclusive)
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if fd < 0 { throw StoreError.system(errno, "opening the lock file", path) }
        if flock(fd, (mode == .shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0 {
            // No close here: the object is fully initialised, so deinit runs and closes it (closing twice
            // could close a descriptor another thread just opened).
            let why = mode == .shared ? "a garbage collection or index rebuild is running on it" : "another job is using it"
            throw StoreError(.locked, "the store is locked (\(path)): \(why); wait for it to finish and run \(what) again")
        }
    }

    /// Turns an exclusive lock into a shared one (after `store init`).
    func downgrade() {
        flock(fd, LOCK_SH)
        exclusive.store(false, ordering: .releasing)
    }

    deinit { if fd >= 0 { close(fd) } }
}
