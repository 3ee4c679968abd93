import Foundation
import OutpostCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Walks the selection depth-first, holding an open descriptor per folder and reaching every entry relative to
/// it (a path component swapped for a link after the scan is never followed). It makes a node of each entry,
/// finds hard links, asks the change detector which files to read and queues those, and moves on: each folder's
/// tree is written, bottom-up, by a task of its own once its files and subfolders are done (`TreeTask`), so the
/// walk keeps the workers' queue full instead of waiting for every folder's files and tree upload in turn.
/// One walker per backup, run by one task.
final class Walker {
    let selection: Selection
    let detector: ChangeDetector
    let queue: FileQueue
    let trees: TreeWriter
    let tally: BackupTally
    let hooks: BackupOptions.Hooks
    private let names = OwnerNames()
    private var hardlinks = HardLinks()

    init(selection: Selection, detector: ChangeDetector, queue: FileQueue, trees: TreeWriter, tally: BackupTally, hooks: BackupOptions.Hooks) {
        self.selection = selection
        self.detector = detector
        self.queue = queue
        self.trees = trees
        self.tally = tally
        self.hooks = hooks
    }

    /// Walks from `/` (open as `root`), against the parent point's root tree; returns the new root tree's id.
    func walk(root: DirectoryHandle, previous: Tree?) async throws -> BlobID {
        try await walkVirtual(selection.root, path: [0x2f], directory: root, previous: previous).value.get()
    }

    /// An entry of a folder, waiting for the folder's tree.
    private enum Slot {
        case ready(Node)
        case pending(Future<FileResult>)
        case hardlink(Node, Future<FileResult>)
        case directory(Node, path: [UInt8], previous: BlobID?, virtual: Selection.Trie?)
    }

    /// The folders above the selected paths, down to them. `directory` nil: the folder could not be opened (it
    /// was recorded), so it is saved empty.
    private func walkVirtual(_ trie: Selection.Trie, path: [UInt8], directory: DirectoryHandle?, previous: Tree?) async throws -> TreeTask.Result {
        var slots: [Slot] = []
        for name in trie.children.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            guard let directory else { break }
            let sub = trie.children[name]!
            let child = FS.join(path, name)
            let (st, err) = FS.lstat(at: directory.fd, name)
            if err != 0 { tally.record(child, "vanished before it could be read (\(Errno(err).message))"); continue }
            if sub.selected {
                if let slot = try await makeSlot(name: name, path: child, in: directory, st: st, previous: previous?.node(named: name)) {
                    slots.append(slot)
                }
            } else {
                guard FS.type(of: st) == .directory else { tally.record(child, "is no longer a directory"); continue }
                let node = makeNode(name: name, path: child, st: st, type: .directory)
                slots.append(.directory(node, path: child, previous: previous?.node(named: name)?.subtree, virtual: sub))
            }
        }
        guard let directory else { return TreeTask.start([], trees: trees, tally: tally) }
        return try await finish(slots, in: directory, previous: previous)
    }

    private func walkDirectory(_ path: [UInt8], directory: DirectoryHandle?, previous: Tree?) async throws -> TreeTask.Result {
        if let e = tally.fatalError { throw e }
        guard let directory else { return TreeTask.start([], trees: trees, tally: tally) }
        var slots: [Slot] = []
        let names: [[UInt8]]
        do { names = try FS.listDirectory(directory.fd) } catch {
            tally.record(path, "the folder could not be listed (\(error.message)); it is saved empty")
            names = []
        }
        for name in names {
            let child = FS.join(path, name)
            if selection.excludes(path: child, name: name) { continue }
            let (st, err) = FS.lstat(at: directory.fd, name)
            if err != 0 {
                tally.record(child, err == ENOENT ? "vanished during the backup" : "cannot be examined: \(Errno(err).message)")
                continue
            }
            if let slot = try await makeSlot(name: name, path: child, in: directory, st: st, previous: previous?.node(named: name)) {
                slots.append(slot)
            }
        }
        return try await finish(slots, in: directory, previous: previous)
    }

    /// Opens a folder the scan found in `parent`, checking that it is still that folder: not a symlink swapped in,
    /// not another folder moved there. Nil: recorded, and the folder is saved empty.
    private func openScanned(_ node: Node, path: [UInt8], in parent: DirectoryHandle) -> DirectoryHandle? {
        hooks.beforeList?(path)
        guard let dir = DirectoryHandle.open(node.name, in: parent) else {
            let e = errno
            switch e {
            case ENOENT: tally.record(path, "vanished during the backup; it is saved empty")
            case ELOOP, ENOTDIR: tally.record(path, "was replaced during the backup; it is saved empty")
            default: tally.record(path, "the folder could not be listed (\(Errno(e).message)); it is saved empty")
            }
            return nil
        }
        var st = stat()
        guard fstat(dir.fd, &st) == 0, UInt64(st.st_ino) == node.inode, UInt64(st.st_dev) == node.device else {
            tally.record(path, "was replaced during the backup; it is saved empty")
            return nil
        }
        return dir
    }

    private func makeSlot(name: [UInt8], path: [UInt8], in directory: DirectoryHandle, st: stat, previous: Node?) async throws -> Slot? {
        guard let type = FS.type(of: st) else { tally.record(path, "has an unknown file type; skipped"); return nil }
        var node = makeNode(name: name, path: path, st: st, type: type)
        switch type {
        case .directory:
            return .directory(node, path: path, previous: ChangeDetector.previousSubtree(of: previous), virtual: nil)
        case .symlink:
            do { node.linkTarget = try FS.readLink(at: directory.fd, name) } catch {
                tally.record(path, "the link could not be read: \(error.message)"); return nil
            }
            node.size = 0
            tally.count { $0.otherEntries += 1 }
            return .ready(node)
        case .file:
            tally.progress.bytesSeen.add(Int64(st.st_size), ordering: .relaxed)
            let future = Future<FileResult>()
            if st.st_nlink > 1, let first = hardlinks.claim(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), path: path, result: future) {
                node.type = .hardlink
                node.linkTarget = first.path
                return .hardlink(node, first.result)
            }
            switch ChangeDetector.verdict(for: node, previous: previous) {
            case .unchanged(let extents):
                node.extents = extents
                tally.count {
                    $0.filesUnchanged += 1; $0.bytesTotal += Int64(node.size)
                }
                tally.progress.files.add(1, ordering: .relaxed)
                future.fulfil(.stored(node))
                return .pending(future)
            case .changed:
                tally.count { $0.filesChanged += 1 }
            case .new:
                tally.count { $0.filesNew += 1 }
            }
            await queue.submit(FileJob(path: path, directory: directory, node: node, result: future))
            return .pending(future)
        case .fifo, .socket, .characterDevice, .blockDevice:
            node.size = 0
            tally.count { $0.otherEntries += 1 }
            return .ready(node)
        case .hardlink:
            return nil
        }
    }

    /// Recurses into directories, then leaves the folder's tree to a task that waits for its entries.
    private func finish(_ slots: [Slot], in parent: DirectoryHandle, previous: Tree?) async throws -> TreeTask.Result {
        var entries: [TreeTask.Entry] = []
        entries.reserveCapacity(slots.count)
        let previousTrees = await detector.previousTrees(
            slots.prefix(1024).compactMap { if case .directory(_, _, let prevID, _) = $0 { prevID } else { nil } })
        for slot in slots {
            if case .directory(let node, let path, let prevID, let virtual) = slot {
                let prevTree: Tree? =
                    if let prevID, let known = previousTrees[prevID] { known } else { await detector.previousTree(prevID) }
                let directory = openScanned(node, path: path, in: parent)
                let subtree =
                    if let virtual {
                        try await walkVirtual(virtual, path: path, directory: directory, previous: prevTree)
                    } else {
                        try await walkDirectory(path, directory: directory, previous: prevTree)
                    }
                tally.count { $0.directories += 1 }
                entries.append(.directory(node, subtree))
            }
        }
        for slot in slots {
            switch slot {
            case .ready(let node): entries.append(.ready(node))
            case .pending(let future): entries.append(.file(future))
            case .hardlink(let node, let future): entries.append(.hardlink(node, future))
            case .directory: break
            }
        }
        return TreeTask.start(entries, previous: previous, trees: trees, tally: tally)
    }

    private func makeNode(name: [UInt8], path: [UInt8], st: stat, type: NodeType) -> Node {
        var n = Node(name: name, type: type)
        n.mode = UInt32(st.st_mode) & 0o7777
        n.uid = st.st_uid
        n.gid = st.st_gid
        n.user = names.user(st.st_uid)
        n.group = names.group(st.st_gid)
        n.mtimeNanos = FS.nanos(st.st_mtim)
        n.ctimeNanos = FS.nanos(st.st_ctim)
        n.size = type == .file ? UInt64(st.st_size) : 0
        n.inode = UInt64(st.st_ino)
        n.device = UInt64(st.st_dev)
        n.linkCount = UInt64(st.st_nlink)
        n.rdev = UInt64(st.st_rdev)
        n.xattrs = FS.xattrs(path)
        return n
    }
}

/// The files with more than one link the walk has met, by device and inode: the first name of each is read,
/// the others become hard-link nodes pointing at it (its path inside the recovery point) and share its content.
struct HardLinks {
    private struct Key: Hashable { let device: UInt64; let inode: UInt64 }
    private var first: [Key: (path: [UInt8], result: Future<FileResult>)] = [:]

    /// The first name of this file when the walk met it before; otherwise nil, and `path` (whose content
    /// `result` will hold) becomes its first name.
    mutating func claim(device: UInt64, inode: UInt64, path: [UInt8], result: Future<FileResult>) -> (path: [UInt8], result: Future<FileResult>)? {
        let key = Key(device: device, inode: inode)
        if let known = first[key] { return known }
        first[key] = (path, result)
        return nil
    }
}
