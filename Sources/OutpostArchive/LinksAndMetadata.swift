import COutpostSystem
import OutpostCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Everything a restore creates besides file content: symlinks, FIFOs and device nodes (sockets are left to
/// the program that listens on them), hard links (made once the files they point at are in place), and the
/// owner, mode, extended attributes and times of every entry. Nothing reached through a name someone swapped
/// meanwhile is changed.
final class LinksAndMetadata: Sendable {
    let options: RestoreOptions
    let planner: RestorePlanner
    let tally: RestoreTally
    /// Hard links met during the walk, made at the end: their parent's components and backed-up mtime.
    private let hardlinks = Mutex<[(parent: [[UInt8]], parentMtime: Int64?, node: Node)]>([])
    /// Point paths of the files this run put in place: the first occurrences a hard link may point at.
    private let restoredFiles = Mutex(Set<[UInt8]>())
    /// User and group names looked up once per restore.
    private let names = OwnerNames()

    init(options: RestoreOptions, planner: RestorePlanner, tally: RestoreTally) {
        self.options = options
        self.planner = planner
        self.tally = tally
    }

    func restoreSpecial(_ node: Node, parentFD: Int32, components: [[UInt8]]) throws {
        let path = tally.display(components)
        func create() -> Int32 {
            FS.withCPath(node.name) { name -> Int32 in
                switch node.type {
                case .symlink: return FS.withCPath(node.linkTarget) { symlinkat($0, parentFD, name) }
                case .fifo: return mkfifoat(parentFD, name, 0o600)
                case .characterDevice: return mknodat(parentFD, name, S_IFCHR | 0o600, dev_t(node.rdev))
                case .blockDevice: return mknodat(parentFD, name, S_IFBLK | 0o600, dev_t(node.rdev))
                default: return 0
                }
            }
        }
        if node.type == .socket {
            // A socket is created by the program that listens on it; nothing to restore.
            tally.skipped()
            return
        }
        if (node.type == .characterDevice || node.type == .blockDevice) && geteuid() != 0 {
            tally.fail(components, "device nodes can only be restored as root; skipped")
            return
        }
        var r = create()
        if r != 0 && errno == EEXIST {
            switch try planner.resolve(conflict: "\(path) already exists") {
            case .skip: tally.skipped(); return
            case .replace:
                try RestorePlanner.removeExisting(node.name, in: parentFD, path: path)
                r = create()
            }
        }
        if r != 0 { throw ArchiveError.system(errno, "creating", path) }
        options.hooks.afterCreate?(components)
        applySpecialMetadata(node, parentFD: parentFD, components: components)
        tally.count { $0.otherEntries += 1 }
    }

    /// Owner, mode and times of a symlink, FIFO or device node, set through an O_PATH descriptor opened without
    /// following links (a device's driver is not called) and checked to be the entry just created: whoever can
    /// write to the folder may have swapped the name for a symlink or a hard link to a file elsewhere, and
    /// nothing reached that way may change. (`fchmodat` follows symlinks; glibc's AT_SYMLINK_NOFOLLOW emulation
    /// needs 2.32 and still checks by name.)
    private func applySpecialMetadata(_ node: Node, parentFD: Int32, components: [[UInt8]]) {
        let fd = FS.withCPath(node.name) { openat(parentFD, $0, outpost_O_PATH | O_NOFOLLOW | O_CLOEXEC) }
        guard fd >= 0 else { tally.fail(components, "owner, mode and times not restored: \(Errno(errno).message)"); return }
        defer { close(fd) }
        var st = stat()
        let isDevice = node.type == .characterDevice || node.type == .blockDevice
        guard fstat(fd, &st) == 0, FS.type(of: st) == node.type, st.st_nlink == 1,
            !isDevice || UInt64(st.st_rdev) == node.rdev
        else {
            tally.fail(components, "was replaced while it was being restored; its owner, mode and times were not set")
            return
        }
        if options.restoreOwnership {
            let (uid, gid) = owner(node)
            if outpost_fchown_opath(fd, uid, gid) != 0 { tally.fail(components, "owner not restored: \(Errno(errno).message)") }
        }
        if node.type != .symlink, outpost_fchmod_opath(fd, mode_t(node.mode)) != 0 {
            tally.fail(components, "mode not restored: \(Errno(errno).message)")
        }
        var times = [FS.timespec(nanos: node.mtimeNanos), FS.timespec(nanos: node.mtimeNanos)]
        if outpost_utimens_opath(fd, Int64(times[0].tv_sec), times[0].tv_nsec) != 0 {
            // Kernels without AT_EMPTY_PATH for utimensat: a symlink's times by name, never following it.
            let r = errno == EOPNOTSUPP ? FS.withCPath(node.name) { utimensat(parentFD, $0, &times, AT_SYMLINK_NOFOLLOW) } : -1
            if r != 0 { tally.fail(components, "times not restored: \(Errno(errno).message)") }
        }
    }

    /// The owner by name when this machine knows the name, else by number.
    private func owner(_ node: Node) -> (uid_t, gid_t) {
        (names.uid(named: node.user) ?? node.uid, names.gid(named: node.group) ?? node.gid)
    }

    /// Owner, mode, xattrs and times of a file or folder, in that order (chown clears set-id bits; times last).
    /// `current`: the entry's status as it is now (a file just written), so that an owner or a mode it already
    /// has is not set again: two system calls per file in a restore of many small files.
    func applyMetadata(_ node: Node, fd: Int32, components: [[UInt8]], current: stat? = nil) {
        if options.restoreOwnership {
            let (uid, gid) = owner(node)
            if current.map({ $0.st_uid != uid || $0.st_gid != gid }) ?? true, fchown(fd, uid, gid) != 0 {
                tally.fail(components, "owner not restored: \(Errno(errno).message)")
            }
        }
        for x in node.xattrs {
            let r = FS.withCPath(x.name) { n in x.value.withUnsafeBytes { outpost_fsetxattr(fd, n, $0.baseAddress, x.value.count) } }
            if r != 0 {
                tally.fail(components, "extended attribute \(String(decoding: x.name, as: UTF8.self)) not restored: \(Errno(errno).message)")
            }
        }
        if current.map({ $0.st_mode & 0o7777 != mode_t(node.mode) & 0o7777 }) ?? true, fchmod(fd, mode_t(node.mode)) != 0 {
            tally.fail(components, "mode not restored: \(Errno(errno).message)")
        }
        var times = [FS.timespec(nanos: node.mtimeNanos), FS.timespec(nanos: node.mtimeNanos)]
        if futimens(fd, &times) != 0 { tally.fail(components, "times not restored: \(Errno(errno).message)") }
    }

    // MARK: Hard links

    /// A hard link met in the folder at `parent` (whose backed-up mtime is `parentMtime`), made at the end.
    func deferHardlink(_ node: Node, parent: [[UInt8]], parentMtime: Int64?) {
        hardlinks.withLock { $0.append((parent, parentMtime, node)) }
    }

    /// A file put in place at `components`: a hard link may point at it.
    func markRestored(_ components: [[UInt8]]) {
        restoredFiles.withLock { _ = $0.insert(RestoreTally.pointPath(components)) }
    }

    /// Links each hard link to its first occurrence when that was restored in this run; otherwise `copy`
    /// writes its content (node, parent descriptor, components). Both ends are reached through O_NOFOLLOW
    /// directory descriptors from the target.
    func linkHardlinks(targetFD: Int32, copy: (Node, Int32, [[UInt8]]) async -> Void) async throws {
        let links = hardlinks.withLock { $0 }
        for (parent, parentMtime, node) in links {
            let comps = parent + [node.name]
            guard let parentFD = openPath(parent, from: targetFD) else { tally.fail(comps, "its folder could not be opened"); continue }
            defer {
                // Adding the link changed the folder's mtime: put the backed-up one back.
                if let parentMtime {
                    var times = [FS.timespec(nanos: parentMtime), FS.timespec(nanos: parentMtime)]
                    futimens(parentFD, &times)
                }
                close(parentFD)
            }
            let targetComps = node.linkTarget.split(separator: 0x2f).map(Array.init)
            let firstRestored = restoredFiles.withLock { $0.contains(RestoreTally.pointPath(targetComps)) }
            if firstRestored, !targetComps.isEmpty, let srcParent = openPath(Array(targetComps.dropLast()), from: targetFD) {
                defer { close(srcParent) }
                var r = FS.withCPath(targetComps.last!) { s in FS.withCPath(node.name) { d in linkat(srcParent, s, parentFD, d, 0) } }
                if r != 0 && errno == EEXIST && options.existing == .overwrite {
                    try RestorePlanner.removeExisting(node.name, in: parentFD, path: tally.display(comps))
                    r = FS.withCPath(targetComps.last!) { s in FS.withCPath(node.name) { d in linkat(srcParent, s, parentFD, d, 0) } }
                }
                if r == 0 { tally.count { $0.otherEntries += 1 }; continue }
                if errno == EEXIST && options.existing == .skip { tally.skipped(); continue }
            }
            var file = node
            file.type = .file
            await copy(file, parentFD, comps)
        }
    }

    private func openPath(_ components: [[UInt8]], from root: Int32) -> Int32? {
        var fd = dup(root)
        for c in components {
            guard Node.isSafeName(c) else { close(fd); return nil }
            let next = FS.withCPath(c) { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            close(fd)
            if next < 0 { return nil }
            fd = next
        }
        return fd
    }
}
