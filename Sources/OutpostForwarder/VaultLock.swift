import Dispatch
import Foundation
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// Keeps the vault's retention apart from forwarding: a forwarding run (in `relay serve` or `relay forward`)
/// holds `DATA/vault/forward.lock` shared, the retention exclusive. Deleting a vault pack is safe only while
/// no run is about to skip the blobs the ledger places there (docs/vault.md §19). Held until released or the
/// process ends (flock).
final class VaultLock: Sendable {
    private let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    /// Waits for the lock on a thread of its own (a long retention run must not hold a cooperative thread).
    static func acquire(data: String, exclusive: Bool) async throws -> VaultLock {
        let path = VaultLink.paths(data).dir + "/forward.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if fd < 0 {
            throw ForwarderError(.io, "cannot open \(path) (\(String(cString: strerror(errno)))); check the relay's data directory")
        }
        let result: Int32 = await withCheckedContinuation { done in
            DispatchQueue.global(qos: .utility).async {
                var r: Int32
                repeat { r = flock(fd, exclusive ? LOCK_EX : LOCK_SH) } while r != 0 && errno == EINTR
                done.resume(returning: r == 0 ? 0 : errno)
            }
        }
        if result != 0 {
            close(fd)
            throw ForwarderError(.io, "cannot lock \(path) (\(String(cString: strerror(result))))")
        }
        return VaultLock(fd: fd)
    }
}
