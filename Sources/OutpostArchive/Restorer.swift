import COutpostSystem
import Foundation
import Logging
import OutpostCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What to do when the target already holds an entry the restore would create.
public enum ExistingEntries: String, Sendable, CaseIterable {
    /// Refuse before writing anything, listing what is in the way (the default).
    case refuse
    /// Replace existing files, links and empty directories in the way.
    case overwrite
    /// Leave existing entries as they are and restore the rest.
    case skip
}

public struct RestoreOptions: Sendable {
    public var target: String
    /// Absolute paths inside the recovery point; empty means everything.
    public var include: [String]
    public var existing: ExistingEntries
    public var restoreOwnership: Bool
    public var workers: Int
    /// Fault injection for tests.
    var hooks = Hooks()

    struct Hooks: Sendable {
        /// Runs after a symlink, FIFO or device node was created, before its metadata is set (target-relative components).
        var afterCreate: (@Sendable ([[UInt8]]) -> Void)?
    }

    public init(
        target: String, include: [String] = [], existing: ExistingEntries = .refuse,
        restoreOwnership: Bool = geteuid() == 0, workers: Int = ProcessInfo.processInfo.activeProcessorCount * 2
    ) {
        self.target = target
        self.include = include
        self.existing = existing
        self.restoreOwnership = restoreOwnership
        self.workers = max(1, workers)
    }
}

public struct RestoreResult: Sendable {
    public var files = 0
    public var directories = 0
    public var otherEntries = 0
    public var skipped = 0
    public var bytes: Int64 = 0
    public var failures: [FailedFile] = []
}

/// Restores a recovery point (or some paths of it) into a target directory: the coordinator of the restore's
/// stages, each in its own file: `RestorePlanner` (what is selected, what is in the way, refuse/overwrite/skip),
/// `FileWriter` (files under a temporary name, content in batches or prefetched groups) and `LinksAndMetadata`
/// (special files, hard links, owners, modes, times, xattrs). The restorer walks the trees (`TreeWalker`).
///
/// Every entry is created relative to an open descriptor of its parent directory, with O_NOFOLLOW and names
/// checked by `Tree.decode`: whatever a damaged or hostile store holds, nothing is written outside the target.
/// Files are written by a bounded pool of workers; a directory's metadata is applied after its content.
public final class Restorer: Sendable {
    let repository: any BlobRepository
    let point: RecoveryPointInfo
    let options: RestoreOptions
    let logger: Logger
    private let slots: AsyncSemaphore
    /// Subfolders restored at the same time as their siblings (each keeps its descriptor open until its content
    /// is done). A folder that finds none free is restored by its parent's task: never a wait, so never a deadlock
    /// of parents holding every place while their subfolders wait for one.
    private let folderSlots = Mutex(8)
    public let progressBytes = Atomic<Int64>(0)

    public init(repository: any BlobRepository, point: RecoveryPointInfo, options: RestoreOptions, logger: Logger = Logger(label: "outpost.restore"))
    {
        self.repository = repository
        self.point = point
        self.options = options
        self.logger = logger
        slots = AsyncSemaphore(permits: options.workers)
    }

    /// The stages of one run.
    private struct Stages: Sendable {
        let trees: TreeWalker
        let filter: RestorePlanner.Filter
        let tally: RestoreTally
        let links: LinksAndMetadata
        let files: FileWriter
        let smallFiles: SmallFileQueue
        let prefetch: TreePrefetch
    }

    public func run() async throws -> RestoreResult {
        guard let rootID = point.point.root else { throw ArchiveError(.notFound, "recovery point \(point.id.shortHex) has no root tree") }
        let trees = TreeWalker(repository: repository)
        let planner = RestorePlanner(existing: options.existing, trees: trees)
        let filter = RestorePlanner.Filter(includes: options.include.map { FS.absolute($0).split(separator: "/").map { Array($0.utf8) } })
        let root = try await trees.tree(rootID)
        try await planner.checkIncludes(filter, in: root, point: point)
        let target = FS.absolute(options.target)
        do { try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true) } catch {
            throw ArchiveError(.io, "cannot create the restore target \(target): \(error.localizedDescription)")
        }
        let targetFD = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if targetFD < 0 { throw ArchiveError.system(errno, "opening the restore target", target) }
        defer { close(targetFD) }
        try await planner.refuseConflicts(root, target: target, filter: filter)
        let tally = RestoreTally(target: options.target, logger: logger) { self.progressBytes.add($0, ordering: .relaxed) }
        let links = LinksAndMetadata(options: options, planner: planner, tally: tally)
        let files = FileWriter(repository: repository, planner: planner, metadata: links, tally: tally)
        let smallFiles = SmallFileQueue(capacity: options.workers + 2)
        let prefetch = TreePrefetch(trees: trees, enabled: options.include.isEmpty)
        defer { prefetch.stop() }
        prefetch.prefetchChildren(of: [root])
        let stages = Stages(
            trees: trees, filter: filter, tally: tally, links: links, files: files, smallFiles: smallFiles, prefetch: prefetch)
        // The root is the target itself: no metadata of its own, and its descriptor is closed above.
        let rootFolder = OpenFolder(fd: targetFD, isNew: false) { _ in }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<options.workers {
                group.addTask {
                    for await batch in smallFiles.batches {
                        await files.restoreSmallFiles(batch)
                        smallFiles.done()
                    }
                }
            }
            do {
                try await restoreDirectory(root, folder: rootFolder, components: [], mtime: nil, stages)
                rootFolder.release()
            } catch {
                rootFolder.release(failed: true)
                await smallFiles.finish()
                throw error
            }
            await smallFiles.finish()
            try await group.waitForAll()
        }
        try await links.linkHardlinks(targetFD: targetFD) { await files.restoreFile($0, parentFD: $1, components: $2) }
        if let e = tally.fatalError { throw e }
        return tally.counted
    }

    /// Walks a folder: subfolders (in parallel where a place is free), large files (each in a task) and special
    /// entries now; small files go to the restore's `SmallFileQueue`, which keeps `folder` open until they are done.
    private func restoreDirectory(_ tree: Tree, folder: OpenFolder, components: [[UInt8]], mtime: Int64?, _ s: Stages) async throws {
        let dirFD = folder.fd
        let existed = !folder.isNew
        if existed { s.files.removeLeftovers(tree, fd: dirFD, components: components) }
        // The subfolders' trees: fetched ahead (TreePrefetch), else in one request; from a relay, a round trip per
        // folder dominated small-file restores. At most 1,024 of them are held at once per level (folders with
        // more fetch the rest one by one).
        let subtreeIDs = Array(
            tree.nodes.lazy.compactMap { n in
                n.type == .directory && s.filter.decide(components + [n.name]) != .none ? n.subtree : nil
            }.prefix(1024))
        let subtrees = await s.prefetch.trees(subtreeIDs)
        await withTaskGroup(of: Void.self) { tasks in
            for node in tree.nodes {
                if s.tally.stopped { break }
                let comps = components + [node.name]
                if s.filter.decide(comps) == .none { continue }
                do {
                    switch node.type {
                    case .directory:
                        // Folders of small files cost a round trip each from a relay: siblings go on in parallel.
                        if takeFolderSlot() {
                            tasks.addTask {
                                defer { self.folderSlots.withLock { $0 += 1 } }
                                do {
                                    try await self.restoreSubdirectory(node, parentFD: dirFD, components: comps, prefetched: subtrees, s)
                                } catch let e as ArchiveError where e.stopsTheRestore {
                                    s.tally.stop(e)
                                } catch {
                                    s.tally.fail(comps, "\(error)")
                                }
                            }
                        } else {
                            try await restoreSubdirectory(node, parentFD: dirFD, components: comps, prefetched: subtrees, s)
                        }
                    case .file where FileWriter.isSmall(node):
                        await s.smallFiles.add(node, comps, in: folder)
                    case .file:
                        await slots.acquire()
                        tasks.addTask {
                            defer { self.slots.release() }
                            await s.files.restoreFile(node, parentFD: dirFD, components: comps, newFolder: !existed)
                        }
                    case .hardlink:
                        s.links.deferHardlink(node, parent: components, parentMtime: mtime)
                    case .symlink, .fifo, .socket, .characterDevice, .blockDevice:
                        try s.links.restoreSpecial(node, parentFD: dirFD, components: comps)
                    }
                } catch let e as ArchiveError where e.stopsTheRestore {
                    s.tally.stop(e)
                } catch {
                    s.tally.fail(comps, "\(error)")
                }
            }
            await tasks.waitForAll()
        }
    }

    private func takeFolderSlot() -> Bool {
        folderSlots.withLock { free in
            guard free > 0 else { return false }
            free -= 1
            return true
        }
    }

    /// `prefetched`: subtrees fetched with the parent's other subfolders (a tree missing there, because that
    /// request failed, is fetched on its own and fails only its folder).
    private func restoreSubdirectory(_ node: Node, parentFD: Int32, components: [[UInt8]], prefetched: [BlobID: Tree], _ s: Stages) async throws {
        guard let (fd, existed) = try openDirectory(node.name, in: parentFD, components: components, s) else { return }
        let folder = OpenFolder(fd: fd, isNew: !existed) { apply in
            if apply {
                s.links.applyMetadata(node, fd: fd, components: components)
                s.tally.count { $0.directories += 1 }
            }
            close(fd)
        }
        do {
            if let sub = node.subtree {
                let tree = if let known = prefetched[sub] { known } else { try await s.trees.tree(sub) }
                try await restoreDirectory(tree, folder: folder, components: components, mtime: node.mtimeNanos, s)
            }
            folder.release()
        } catch {
            folder.release(failed: true)
            throw error
        }
    }

    /// Creates (or, when allowed, reuses) a directory and opens it without following links. `existed`: it was
    /// there before (so it may hold leftovers of an interrupted restore).
    private func openDirectory(_ name: [UInt8], in parentFD: Int32, components: [[UInt8]], _ s: Stages) throws -> (fd: Int32, existed: Bool)? {
        let display = { s.tally.display(components) }
        let made = FS.withCPath(name) { mkdirat(parentFD, $0, 0o700) }
        if made != 0 && errno != EEXIST { throw ArchiveError.system(errno, "creating directory", display()) }
        var existed = made != 0
        var fd = FS.withCPath(name) { openat(parentFD, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        if fd < 0 && (errno == ENOTDIR || errno == ELOOP) {
            // Something that is not a directory is in the way.
            switch try s.files.planner.resolve(conflict: "\(display()) exists and is not a directory") {
            case .replace:
                if FS.withCPath(name, { unlinkat(parentFD, $0, 0) }) != 0 { throw ArchiveError.system(errno, "removing", display()) }
                if FS.withCPath(name, { mkdirat(parentFD, $0, 0o700) }) != 0 { throw ArchiveError.system(errno, "creating directory", display()) }
                existed = false
                fd = FS.withCPath(name) { openat(parentFD, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            case .skip:
                s.tally.skipped()
                return nil
            }
        }
        if fd < 0 { throw ArchiveError.system(errno, "opening directory", display()) }
        return (fd, existed)
    }
}
