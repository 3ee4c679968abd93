import Foundation
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

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
