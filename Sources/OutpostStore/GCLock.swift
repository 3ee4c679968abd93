import Foundation
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// One gc at a time per store (flock on `STORE/gc.lock`, holding the gc's pid). Online gc shares the store's
/// lock with writers and readers, so two gcs (a `relay gc` beside the relay's daily prune) would otherwise plan
/// against each other's half-done work.
final class GCLock: Sendable {
    private let fd: Int32

    init(layout: StoreLayout) throws {
        let path = layout.root + "/gc.lock"
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if fd < 0 { throw StoreError.system(errno, "opening the lock file", path) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            var text = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &text, 31, 0)
            let pid = n > 0 ? String(decoding: text.prefix(n), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
            throw StoreError(
                .locked,
                "another garbage collection\(pid.isEmpty ? "" : " (pid \(pid))") is running on the store \(layout.root); wait for it to finish — it reclaims the same space"
            )
        }
        let pid = Array("\(getpid())\n".utf8)
        if ftruncate(fd, 0) == 0 { _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } }
    }

    deinit { close(fd) }
}
