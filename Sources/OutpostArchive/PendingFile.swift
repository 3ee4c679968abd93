import COutpostSystem
import OutpostCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A regular file being restored. It is written under a hidden temporary name in its folder (created
/// O_EXCL with the permission bits it will have, so that most files need no chmod afterwards; set-id bits
/// and the owner come with its metadata) and renamed to its own name only when complete: an interrupted,
/// failed or disk-full restore never leaves a truncated file under a real name, so a re-run with `--skip`
/// keeps only complete files and finishes the rest. Not Sendable: one task writes it from start to end.
final class PendingFile {
    let parentFD: Int32
    let name: [UInt8]
    let tempName: [UInt8]
    private(set) var fd: Int32
    private var placed = false

    init(parentFD: Int32, name: [UInt8], tempName: [UInt8], fd: Int32) {
        self.parentFD = parentFD; self.name = name; self.tempName = tempName; self.fd = fd
    }

    /// Temporary names of files being restored: hidden, and unlike any name a restore would leave behind
    /// (`.outpost-restore-` and 16 hex digits). Leftovers of an interrupted run are removed by the next one.
    static let temporaryPrefix = Array(".outpost-restore-".utf8)

    static func isTemporaryName(_ name: [UInt8]) -> Bool {
        guard name.count == temporaryPrefix.count + 16, name.starts(with: temporaryPrefix) else { return false }
        return name.dropFirst(temporaryPrefix.count).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    private static let nameBase = UInt64.random(in: .min ... .max)
    private static let nameCounter = Atomic<UInt64>(0)

    /// Creates the temporary file for `name` in its folder, under a fresh random temporary name.
    static func create(_ name: [UInt8], in parentFD: Int32, mode: mode_t = 0o600) throws(Errno) -> PendingFile {
        let flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC
        while true {
            var temp = temporaryPrefix
            let digits = Array("0123456789abcdef".utf8)
            // A random base per process and a counter: unique names without a getrandom call per file.
            var bits = nameBase &+ nameCounter.wrappingAdd(1, ordering: .relaxed).oldValue &* 0x9E37_79B9_7F4A_7C15
            for _ in 0..<16 { temp.append(digits[Int(bits & 15)]); bits >>= 4 }
            let fd = FS.withCPath(temp) { openat(parentFD, $0, flags, mode & 0o777) }
            if fd >= 0 { return PendingFile(parentFD: parentFD, name: name, tempName: temp, fd: fd) }
            if errno != EEXIST { throw Errno(errno) }
        }
    }

    /// Closes the descriptor; its error is the last word on whether the data was written (NFS, quotas).
    func close() throws(Errno) {
        guard fd >= 0 else { return }
        let r = Glibc.close(fd)
        fd = -1
        if r != 0 && errno != EINTR { throw Errno(errno) }
    }

    /// Renames the file to its own name, replacing what is there or (RENAME_NOREPLACE) never; 0 or -1 with errno.
    func rename(replacing: Bool) -> Int32 {
        FS.withCPath(tempName) { t in
            FS.withCPath(name) { n in
                replacing ? renameat(parentFD, t, parentFD, n) : outpost_renameat_noreplace(parentFD, t, parentFD, n)
            }
        }
    }

    func markPlaced() { placed = true }

    /// Removes the temporary file unless it was put in place; safe to call more than once.
    func discard() {
        if fd >= 0 { _ = Glibc.close(fd); fd = -1 }
        if !placed { _ = FS.withCPath(tempName) { unlinkat(parentFD, $0, 0) }; placed = true }
    }

    /// Removes temporary files an interrupted restore left in a folder it is now restoring into. Only names of
    /// the temporary form that are regular files and not entries of the recovery point's folder are touched.
    /// Returns the names removed.
    static func removeLeftovers(in dirFD: Int32, keeping tree: Tree) -> [[UInt8]] {
        let listFD = dup(dirFD)
        guard listFD >= 0, let dir = fdopendir(listFD) else { if listFD >= 0 { Glibc.close(listFD) }; return [] }
        defer { closedir(dir) }
        var leftovers: [[UInt8]] = []
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: &ent.pointee.d_name) { p in
                p.withMemoryRebound(to: CChar.self, capacity: 256) { Array(UnsafeRawBufferPointer(start: $0, count: strlen($0))) }
            }
            if isTemporaryName(name) && tree.node(named: name) == nil { leftovers.append(name) }
        }
        var removed: [[UInt8]] = []
        for name in leftovers {
            var st = stat()
            guard FS.withCPath(name, { fstatat(dirFD, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            if FS.withCPath(name, { unlinkat(dirFD, $0, 0) }) == 0 { removed.append(name) }
        }
        return removed
    }
}
