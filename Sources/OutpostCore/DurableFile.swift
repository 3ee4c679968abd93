import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Small files written whole, atomically and durably: a unique temp file beside the target, every byte written,
/// fsync, rename into place, fsync the directory. A reader sees the old file or the new one, never a part,
/// and a file reported written survives a power cut. The one implementation for configs, keys and registries.
public enum DurableFile {
    /// Which step failed, with `errno`; each layer turns it into its own error with the fix.
    public struct Failure: Error, Sendable {
        public let step: String
        public let path: String
        public let errno: Int32
        public var reason: String { String(cString: strerror(errno)) }
        public var isDiskFull: Bool { errno == ENOSPC || errno == EDQUOT }
        public var description: String { "\(step) \(path) failed: \(reason)" }
    }

    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t) throws(Failure) {
        let tmp = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        if fd < 0 { throw Failure(step: "creating", path: tmp, errno: errno) }
        var failure: Failure?
        bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = Failure(step: "writing", path: tmp, errno: errno); return
                }
                done += n
            }
            if fsync(fd) != 0 { failure = Failure(step: "syncing", path: tmp, errno: errno) }
        }
        close(fd)
        if let failure { unlink(tmp); throw failure }
        if rename(tmp, path) != 0 {
            let e = errno
            unlink(tmp)
            throw Failure(step: "renaming into place", path: path, errno: e)
        }
        var dir = (path as NSString).deletingLastPathComponent
        if dir.isEmpty { dir = "." }
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd < 0 { throw Failure(step: "opening directory", path: dir, errno: errno) }
        defer { close(dfd) }
        if fsync(dfd) != 0 { throw Failure(step: "syncing directory", path: dir, errno: errno) }
    }
}

extension DurableFile {
    /// Writes a secret (a private key, a passphrase, a credentials file, a configuration holding a credential):
    /// the file is created with `mode` (0600 unless given) from its first byte, so no other local user can read
    /// it while it is written, whatever the umask; then it is renamed into place as `write` does.
    public static func writeSecret(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws(OutpostError) {
        do { try write(bytes, to: path, mode: mode) } catch {
            throw OutpostError(
                error.isDiskFull ? .diskFull : .io,
                "cannot write \(path): \(error.description); check the folder's permissions and free space, then run the command again")
        }
    }
}

/// Directory paths as users type them: "/srv/store/" and "/srv/store" name the same thing.
public enum DirectoryPath {
    public static func normalized(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }
}
