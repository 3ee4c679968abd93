import Foundation
import OutpostCore

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

    public enum Mode: Sendable { case shared, exclusive }

    init(path: String, mode: Mode, what: String) throws {
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
    func downgrade() { flock(fd, LOCK_SH) }

    deinit { if fd >= 0 { close(fd) } }
}

/// Marks a store as served by `outpost relay serve` (flock on `STORE/serving.lock`). The relay holds it alone; a
/// local job that writes into the store (`backup --store`, `forget --store`) shares it. So a second relay on the
/// same data directory, or a local backup into a served store, is refused with a clear message instead of
/// running beside the relay (issue 8).
public final class ServingLock: Sendable {
    public enum Role: Sendable { case relay, localWriter }
    private let fd: Int32

    public init(store: String, role: Role) throws {
        let root = DirectoryPath.normalized(store)
        let path = root + "/serving.lock"
        // Not a store (yet): nothing serves it, and opening the store will say what is wrong.
        if role == .localWriter && access(root + "/config", F_OK) != 0 { fd = -1; return }
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if fd < 0 { throw StoreError.system(errno, "opening the lock file", path) }
        if flock(fd, (role == .relay ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0 {
            var text = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &text, 31, 0)
            let pid = n > 0 ? String(decoding: text.prefix(n), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
            let who = pid.isEmpty ? "" : " (pid \(pid))"
            switch role {
            case .relay:
                let busy =
                    pid.isEmpty
                    ? "a local job (backup or forget with --store) is writing into it" : "another `outpost relay serve`\(who) already serves it"
                throw StoreError(
                    .locked, "the relay's store \(store) is in use: \(busy); stop that process first, or give this relay its own --data directory")
            case .localWriter:
                throw StoreError(
                    .locked,
                    "the store \(store) is served by a running relay\(who); back up through the relay instead (`outpost enroll`, then `outpost backup` without --store), or stop the relay first"
                )
            }
        }
        if role == .relay {
            let pid = Array("\(getpid())\n".utf8)
            if ftruncate(fd, 0) == 0 { _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } }
        }
    }

    deinit { close(fd) }
}
