import Foundation
import COutpostSystem
import Logging
import OutpostCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What to back up and how.
public struct BackupOptions: Sendable {
    public var machine: String
    public var paths: [String]
    public var exclusions: ExclusionList
    /// Files processed at once. Each also fans its compression out over the cores.
    public var workers: Int
    public var hostname: String
    /// Fault injection for tests: runs before a file is opened, after it was read, and before a folder the scan
    /// found is opened to be listed (path as raw bytes).
    var hooks = Hooks()

    struct Hooks: Sendable {
        var beforeOpen: (@Sendable ([UInt8]) -> Void)?
        var afterRead: (@Sendable ([UInt8]) -> Void)?
        var beforeList: (@Sendable ([UInt8]) -> Void)?
    }

    public init(machine: String, paths: [String], exclusions: ExclusionList = ExclusionList([]),
                workers: Int = ProcessInfo.processInfo.activeProcessorCount + 1, hostname: String = ProcessInfo.processInfo.hostName) {
        self.machine = machine
        self.paths = paths
        self.exclusions = exclusions
        self.workers = max(1, workers)
        self.hostname = hostname
    }
}

public struct BackupResult: Sendable {
    public var point: RecoveryPointInfo
    public var failures: [FailedFile]
}

/// Live counters for a progress line.
public final class BackupProgress: Sendable {
    public let files = Atomic<Int>(0)
    public let bytesRead = Atomic<Int64>(0)
    public let bytesSeen = Atomic<Int64>(0)
    public init() {}
}

/// The backup pipeline: walks the selection depth-first (one walker), hands changed files to a bounded pool of
/// workers (read → FastCDC → SHA-256 → ask the repository what is new → zstd → save), and writes one tree
/// object per directory bottom-up. Files whose size, mtime, ctime and inode match the previous recovery point
/// are not read. Memory is bounded: the walker may run at most `queueLimit` files ahead of the workers and
/// each worker owns one read buffer.
public final class Archiver: Sendable {
    let repository: any BlobRepository
    let options: BackupOptions
    let logger: Logger
    public let progress = BackupProgress()
    private let chunker: FastCDC
    private let compressors: ResourcePool<ZstdCompressor>
    private let names = OwnerNames()
    private let failures = Mutex<[FailedFile]>([])
    private let summary = Mutex(BackupSummary())
    private let queue: AsyncSemaphore
    private let fatal = Mutex<(any Error)?>(nil)
    /// Chunks some worker is compressing or uploading right now. Files with the same content are often read at
    /// the same time (copies side by side in a folder), and the repository answers "missing" to both until one
    /// upload lands: the others skip such chunks instead of compressing and sending them again (22 MB, 4 % of
    /// what a first backup of the benchmark corpus sent to a relay, were such duplicates).
    private let inFlight = Mutex(Set<ChunkID>())
    static let bufferSize = 8 << 20
    static let queueLimit = 512

    public init(repository: any BlobRepository, options: BackupOptions, logger: Logger = Logger(label: "outpost.backup")) {
        self.repository = repository
        self.options = options
        self.logger = logger
        chunker = FastCDC(repository.chunkerParameters)
        let level = repository.compressionLevel
        compressors = ResourcePool { ZstdCompressor(level: level) }
        queue = AsyncSemaphore(permits: Self.queueLimit)
    }

    struct FileJob: Sendable {
        let path: [UInt8]
        /// The folder the scan found the file in; the file is opened relative to it.
        let directory: DirectoryHandle
        let node: Node
        let result: Future<FileResult>
    }

    enum FileResult: Sendable {
        case stored(Node)
        case skipped
        case fatal(any Error)
    }

    public func run() async throws -> BackupResult {
        let started = Date()
        let trie = try selectionTrie()
        let previous = try await repository.latestPoint(machine: options.machine)
        var previousRoot: Tree?
        if let prev = previous, let rootID = prev.point.root {
            previousRoot = try? await loadTree(rootID)
        }
        let rootFD = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if rootFD < 0 { throw ArchiveError.system(errno, "opening", "/") }
        let root = DirectoryHandle(fd: rootFD)
        let (jobs, submit) = AsyncStream<FileJob>.makeStream()
        let rootID: ChunkID = try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<options.workers {
                group.addTask {
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.bufferSize, alignment: 64)
                    defer { buffer.deallocate() }
                    for await job in jobs {
                        job.result.fulfil(await self.process(job, buffer: UnsafeTransfer(buffer)))
                        self.queue.release()
                    }
                }
            }
            do {
                let id = try await self.archiveVirtual(trie, path: [0x2f], directory: root, previous: previousRoot, submit: submit)
                submit.finish()
                try await group.waitForAll()
                return id
            } catch {
                submit.finish()
                group.cancelAll()
                throw error
            }
        }
        // A failure recorded after the last file that could have reported it still stops the commit.
        if let e = fatal.withLock({ $0 }) { throw e }
        var s = summary.withLock { $0 }
        s.durationSeconds = Date().timeIntervalSince(started)
        let failed = failures.withLock { $0 }
        s.failedFiles = failed.count
        let point = RecoveryPoint(machine: options.machine, hostname: options.hostname, paths: trie.selectedPaths,
                                  startedAt: started, finishedAt: Date(), rootTree: rootID, parent: previous?.id.hex, summary: s)
        let info = try await repository.commit(point)
        return BackupResult(point: info, failures: failed)
    }

    // MARK: Selection

    final class PathTrie {
        var children: [[UInt8]: PathTrie] = [:]
        var selected = false
        var selectedPaths: [String] = []
    }

    /// The selected paths as a trie of components: the recovery point's tree mirrors their absolute paths.
    private func selectionTrie() throws -> PathTrie {
        let root = PathTrie()
        guard !options.paths.isEmpty else { throw ArchiveError(.invalidPath, "no path to back up; name at least one file or folder") }
        for p in options.paths {
            let abs = FS.absolute(p)
            let (_, err) = FS.lstat(Array(abs.utf8))
            if err != 0 {
                throw ArchiveError(.invalidPath, "cannot back up \(abs): \(Errno(err).message); check the path")
            }
            guard abs != "/" else { throw ArchiveError(.invalidPath, "backing up / as a whole is not supported; name the folders to protect") }
            root.selectedPaths.append(abs)
            var node = root
            for comp in abs.split(separator: "/") {
                let key = Array(comp.utf8)
                if node.selected { break }
                let next = node.children[key] ?? PathTrie()
                node.children[key] = next
                node = next
            }
            node.selected = true
            node.children = [:]
        }
        root.selectedPaths.sort()
        return root
    }

    // MARK: Walking

    private enum Slot {
        case ready(Node)
        case pending(Future<FileResult>)
        case hardlink(Node, Future<FileResult>)
        case directory(Node, path: [UInt8], previous: ChunkID?, virtual: PathTrie?)
    }

    private let hardlinks = Mutex<[HardlinkKey: (path: [UInt8], result: Future<FileResult>)]>([:])

    struct HardlinkKey: Hashable { let device: UInt64; let inode: UInt64 }

    /// The folders above the selected paths, down to them. `directory` nil: the folder could not be opened (it
    /// was recorded), so it is saved empty.
    private func archiveVirtual(_ trie: PathTrie, path: [UInt8], directory: DirectoryHandle?, previous: Tree?,
                                submit: AsyncStream<FileJob>.Continuation) async throws -> ChunkID {
        var slots: [Slot] = []
        for name in trie.children.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            guard let directory else { break }
            let sub = trie.children[name]!
            let child = FS.join(path, name)
            let (st, err) = FS.lstat(at: directory.fd, name)
            if err != 0 { record(child, "vanished before it could be read (\(Errno(err).message))"); continue }
            if sub.selected {
                if let slot = try await makeSlot(name: name, path: child, in: directory, st: st, previous: previous?.node(named: name), submit: submit) {
                    slots.append(slot)
                }
            } else {
                guard FS.type(of: st) == .directory else { record(child, "is no longer a directory"); continue }
                let node = makeNode(name: name, path: child, st: st, type: .directory)
                slots.append(.directory(node, path: child, previous: previous?.node(named: name)?.subtree, virtual: sub))
            }
        }
        guard let directory else { return try await store(Tree(nodes: [])) }
        return try await finish(slots, in: directory, submit: submit)
    }

    private func archiveDirectory(_ path: [UInt8], directory: DirectoryHandle?, previous: Tree?, submit: AsyncStream<FileJob>.Continuation) async throws -> ChunkID {
        if let e = fatal.withLock({ $0 }) { throw e }
        guard let directory else { return try await store(Tree(nodes: [])) }
        var slots: [Slot] = []
        let names: [[UInt8]]
        do { names = try FS.listDirectory(directory.fd) } catch {
            record(path, "the folder could not be listed (\(error.message)); it is saved empty")
            names = []
        }
        for name in names {
            let child = FS.join(path, name)
            if options.exclusions.excludes(path: child, name: name) { continue }
            let (st, err) = FS.lstat(at: directory.fd, name)
            if err != 0 {
                record(child, err == ENOENT ? "vanished during the backup" : "cannot be examined: \(Errno(err).message)")
                continue
            }
            if let slot = try await makeSlot(name: name, path: child, in: directory, st: st, previous: previous?.node(named: name), submit: submit) {
                slots.append(slot)
            }
        }
        return try await finish(slots, in: directory, submit: submit)
    }

    /// Opens a folder the scan found in `parent`, checking that it is still that folder: not a symlink swapped in,
    /// not another folder moved there. Nil: recorded, and the folder is saved empty.
    private func openScanned(_ node: Node, path: [UInt8], in parent: DirectoryHandle) -> DirectoryHandle? {
        options.hooks.beforeList?(path)
        guard let dir = DirectoryHandle.open(node.name, in: parent) else {
            let e = errno
            switch e {
            case ENOENT: record(path, "vanished during the backup; it is saved empty")
            case ELOOP, ENOTDIR: record(path, "was replaced during the backup; it is saved empty")
            default: record(path, "the folder could not be listed (\(Errno(e).message)); it is saved empty")
            }
            return nil
        }
        var st = stat()
        guard fstat(dir.fd, &st) == 0, UInt64(st.st_ino) == node.inode, UInt64(st.st_dev) == node.device else {
            record(path, "was replaced during the backup; it is saved empty")
            return nil
        }
        return dir
    }

    private func makeSlot(name: [UInt8], path: [UInt8], in directory: DirectoryHandle, st: stat, previous: Node?,
                          submit: AsyncStream<FileJob>.Continuation) async throws -> Slot? {
        guard let type = FS.type(of: st) else { record(path, "has an unknown file type; skipped"); return nil }
        var node = makeNode(name: name, path: path, st: st, type: type)
        switch type {
        case .directory:
            return .directory(node, path: path, previous: previous?.type == .directory ? previous?.subtree : nil, virtual: nil)
        case .symlink:
            do { node.linkTarget = try FS.readLink(at: directory.fd, name) } catch {
                record(path, "the link could not be read: \(error.message)"); return nil
            }
            node.size = 0
            countOther()
            return .ready(node)
        case .file:
            progress.bytesSeen.add(Int64(st.st_size), ordering: .relaxed)
            if st.st_nlink > 1 {
                let key = HardlinkKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
                if let first = hardlinks.withLock({ $0[key] }) {
                    node.type = .hardlink
                    node.linkTarget = first.path
                    return .hardlink(node, first.result)
                }
            }
            let future = Future<FileResult>()
            if st.st_nlink > 1 {
                hardlinks.withLock { $0[HardlinkKey(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))] = (path, future) }
            }
            if let prev = previous, prev.type == .file, prev.size == node.size, prev.mtimeNanos == node.mtimeNanos,
               prev.ctimeNanos == node.ctimeNanos, prev.inode == node.inode {
                node.extents = prev.extents
                summary.withLock { $0.filesUnchanged += 1; $0.bytesTotal += Int64(node.size) }
                progress.files.add(1, ordering: .relaxed)
                future.fulfil(.stored(node))
                return .pending(future)
            }
            if previous?.type == .file {
                summary.withLock { $0.filesChanged += 1 }
            } else {
                summary.withLock { $0.filesNew += 1 }
            }
            await queue.acquire()
            submit.yield(FileJob(path: path, directory: directory, node: node, result: future))
            return .pending(future)
        case .fifo, .socket, .characterDevice, .blockDevice:
            node.size = 0
            countOther()
            return .ready(node)
        case .hardlink:
            return nil
        }
    }

    private func countOther() { summary.withLock { $0.otherEntries += 1 } }

    /// Recurses into directories, waits for the files, and stores the tree.
    private func finish(_ slots: [Slot], in parent: DirectoryHandle, submit: AsyncStream<FileJob>.Continuation) async throws -> ChunkID {
        var nodes: [Node] = []
        nodes.reserveCapacity(slots.count)
        for slot in slots {
            if case .directory(var node, let path, let prevID, let virtual) = slot {
                var prevTree: Tree?
                if let prevID { prevTree = try? await loadTree(prevID) }
                let directory = openScanned(node, path: path, in: parent)
                if let virtual {
                    node.subtree = try await archiveVirtual(virtual, path: path, directory: directory, previous: prevTree, submit: submit)
                } else {
                    node.subtree = try await archiveDirectory(path, directory: directory, previous: prevTree, submit: submit)
                }
                summary.withLock { $0.directories += 1 }
                nodes.append(node)
            }
        }
        for slot in slots {
            switch slot {
            case .ready(let node):
                nodes.append(node)
            case .pending(let future):
                switch await future.value {
                case .stored(let node): nodes.append(node)
                case .skipped: break
                case .fatal(let error): throw error
                }
            case .hardlink(var node, let future):
                switch await future.value {
                case .stored(let first):
                    node.extents = first.extents
                    node.size = first.size
                    summary.withLock { $0.otherEntries += 1; $0.bytesTotal += Int64(first.size) }
                    nodes.append(node)
                case .skipped:
                    record(node.linkTarget, "(hard link \(FS.display(node.name))) could not be read either")
                case .fatal(let error): throw error
                }
            case .directory:
                break
            }
        }
        let tree = Tree(nodes: nodes)
        return try await store(tree)
    }

    private func store(_ tree: Tree) async throws -> ChunkID {
        let bytes = tree.encode()
        let blob = compressors.with { c in bytes.withUnsafeBytes { PreparedBlob.make(kind: .tree, plaintext: $0, compressor: c) } }
        if try await !repository.missing([blob.id]).isEmpty {
            let stats = try await repository.save([blob])
            summary.withLock { $0.bytesAddedStored += stats.storedBytes }
        }
        return blob.id
    }

    private func loadTree(_ id: ChunkID) async throws -> Tree {
        try await TreeWalker(repository: repository).tree(id)
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

    private func record(_ path: [UInt8], _ reason: String) {
        let display = FS.display(path)
        logger.warning("\(display): \(reason)")
        failures.withLock { $0.append(FailedFile(path: display, reason: reason)) }
    }

    // MARK: Reading files

    private func process(_ job: FileJob, buffer: UnsafeTransfer<UnsafeMutableRawBufferPointer>) async -> FileResult {
        if let e = fatal.withLock({ $0 }) { return .fatal(e) }
        options.hooks.beforeOpen?(job.path)
        // Relative to the folder the scan saw, without following a link, and non-blocking: a FIFO swapped in for
        // the file must not hang the backup (opening one for reading waits for a writer).
        let flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
        var fd = FS.withCPath(job.node.name) { openat(job.directory.fd, $0, flags | outpost_O_NOATIME) }
        if fd < 0 && errno == EPERM { fd = FS.withCPath(job.node.name) { openat(job.directory.fd, $0, flags) } }
        if fd < 0 {
            let e = errno
            switch e {
            case ENOENT: record(job.path, "vanished during the backup")
            case ELOOP, ENXIO: record(job.path, "was replaced during the backup; it will be read again next time")
            default: record(job.path, "cannot be read: \(Errno(e).message)")
            }
            return .skipped
        }
        defer { close(fd) }
        var before = stat()
        guard fstat(fd, &before) == 0, (before.st_mode & S_IFMT) == S_IFREG, UInt64(before.st_ino) == job.node.inode,
              UInt64(before.st_dev) == job.node.device else {
            record(job.path, "was replaced during the backup; it will be read again next time")
            return .skipped
        }
        // It is the regular file the scan saw: reads may block (network file systems) as usual.
        let status = fcntl(fd, F_GETFL)
        if status >= 0 && status & O_NONBLOCK != 0 { _ = fcntl(fd, F_SETFL, status & ~O_NONBLOCK) }
        var node = job.node
        do {
            node.extents = try await readExtentsUploading(fd: fd, st: before, path: job.path, buffer: buffer.value)
        } catch let e as Errno {
            record(job.path, "could not be read: \(e.message)")
            return .skipped
        } catch {
            fatal.withLock { if $0 == nil { $0 = error } }
            return .fatal(error)
        }
        node.size = node.extents.reduce(0) { $0 + UInt64($1.length) }
        options.hooks.afterRead?(job.path)
        var after = stat()
        if fstat(fd, &after) == 0,
           FS.nanos(after.st_mtim) != FS.nanos(before.st_mtim) || after.st_size != before.st_size {
            record(job.path, "changed while it was being read; this copy may be inconsistent and it will be read again next time")
            node.mtimeNanos = 0 // forces a re-read next time
        }
        summary.withLock { $0.bytesTotal += Int64(node.size) }
        progress.files.add(1, ordering: .relaxed)
        return .stored(node)
    }

    /// `readExtents` with the file's uploads in a task group. If reading fails, uploads already started finish
    /// rather than be cancelled: other files may have skipped chunks they carry, so a failed one fails the backup.
    private func readExtentsUploading(fd: Int32, st: stat, path: [UInt8], buffer: UnsafeMutableRawBufferPointer) async throws -> [Extent] {
        try await withThrowingTaskGroup(of: Void.self) { uploads in
            do {
                let extents = try await readExtents(fd: fd, st: st, path: path, buffer: buffer, uploads: &uploads)
                try await uploads.waitForAll()
                return extents
            } catch {
                while !uploads.isEmpty {
                    do { try await uploads.next() } catch let failed { fatal.withLock { if $0 == nil { $0 = failed } } }
                }
                throw error
            }
        }
    }

    /// Reads the file's data regions (holes of sparse files are skipped via outpost_SEEK_DATA/outpost_SEEK_HOLE) and chunks them.
    /// A buffer's upload runs in `uploads` while the next buffer is read, hashed and compressed (one at a time).
    private func readExtents(fd: Int32, st: stat, path: [UInt8], buffer: UnsafeMutableRawBufferPointer,
                             uploads: inout ThrowingTaskGroup<Void, any Error>) async throws -> [Extent] {
        let size = Int64(st.st_size)
        var extents: [Extent] = []
        let sparse = Int64(st.st_blocks) * 512 < size
        if !sparse {
            try await chunkRegion(fd: fd, start: 0, end: nil, buffer: buffer, into: &extents, uploads: &uploads)
            return extents
        }
        var pos: Int64 = 0
        while pos < size {
            let data = lseek(fd, off_t(pos), outpost_SEEK_DATA)
            if data < 0 {
                if errno == ENXIO { break } // no more data: the rest is a hole
                throw Errno(errno)
            }
            if Int64(data) > pos { extents.append(.hole(length: Int(Int64(data) - pos))) }
            var hole = Int64(lseek(fd, data, outpost_SEEK_HOLE))
            if hole < 0 { hole = size }
            hole = min(hole, size)
            try await chunkRegion(fd: fd, start: Int64(data), end: hole, buffer: buffer, into: &extents, uploads: &uploads)
            pos = hole
        }
        if pos < size { extents.append(.hole(length: Int(size - pos))) }
        return extents
    }

    private func chunkRegion(fd: Int32, start: Int64, end: Int64?, buffer: UnsafeMutableRawBufferPointer, into extents: inout [Extent],
                             uploads: inout ThrowingTaskGroup<Void, any Error>) async throws {
        var offset = start
        var have = 0
        var eof = false
        let maxChunk = chunker.parameters.maxSize
        let base = buffer.baseAddress!
        while true {
            while have < buffer.count && !eof {
                var want = buffer.count - have
                if let end { want = Int(min(Int64(want), end - offset)) }
                if want == 0 { eof = true; break }
                let n = pread(fd, base + have, want, off_t(offset))
                if n < 0 { if errno == EINTR { continue }; throw Errno(errno) }
                if n == 0 { eof = true; break }
                have += n
                offset += Int64(n)
                progress.bytesRead.add(Int64(n), ordering: .relaxed)
            }
            var cuts: [(Int, Int)] = []
            var pos = 0
            while pos < have {
                let avail = have - pos
                if avail < maxChunk && !eof { break }
                let len = chunker.cut(UnsafeRawBufferPointer(start: base + pos, count: min(avail, maxChunk)))
                cuts.append((pos, len))
                pos += len
            }
            if !cuts.isEmpty {
                extents += try await storeChunks(base: UnsafeRawPointer(base), cuts: cuts, uploads: &uploads)
            }
            summary.withLock { $0.bytesRead += Int64(pos) }
            if pos < have { memmove(base, base + pos, have - pos) }
            have -= pos
            if eof && have == 0 { return }
        }
    }

    /// Hashes the chunks, asks the repository which are new, compresses those over the cores and saves them. The
    /// save runs in `uploads` (the compressed blobs no longer need the buffer) after the previous one has finished.
    private func storeChunks(base: UnsafeRawPointer, cuts: [(Int, Int)], uploads: inout ThrowingTaskGroup<Void, any Error>) async throws -> [Extent] {
        let ids = cuts.map { ChunkID.hash(UnsafeRawBufferPointer(start: base + $0.0, count: $0.1)) }
        let missing = try await repository.missing(ids)
        var work: [(ChunkID, Int, Int)] = []
        var queued = Set<ChunkID>()
        for (i, id) in ids.enumerated() where missing.contains(id) && !queued.contains(id) {
            queued.insert(id)
            work.append((id, cuts[i].0, cuts[i].1))
        }
        work = inFlight.withLock { busy in work.filter { busy.insert($0.0).inserted } }
        if !work.isEmpty {
            let claimed = work.map(\.0)
            let blobs = await compress(work, base: UnsafeTransfer(base))
            if !uploads.isEmpty {
                do { try await uploads.next() } catch {
                    inFlight.withLock { $0.subtract(claimed) }
                    throw error
                }
            }
            uploads.addTask {
                // Success or failure, the chunks are no longer in flight: after a success the repository knows
                // them; after a failure the backup fails (an upload error is fatal).
                defer { self.inFlight.withLock { $0.subtract(claimed) } }
                let stats = try await self.repository.save(blobs)
                self.summary.withLock {
                    $0.bytesAddedRaw += stats.rawBytes
                    $0.bytesAddedStored += stats.storedBytes
                    $0.chunksAdded += stats.blobs
                }
            }
        }
        return zip(ids, cuts).map { .chunk($0, length: $1.1) }
    }

    private func compress(_ work: [(ChunkID, Int, Int)], base: UnsafeTransfer<UnsafeRawPointer>) async -> [PreparedBlob] {
        let lanes = min(work.count, max(1, ProcessInfo.processInfo.activeProcessorCount))
        if lanes == 1 {
            return compressors.with { c in
                work.map { PreparedBlob.make(id: $0.0, kind: .data, plaintext: UnsafeRawBufferPointer(start: base.value + $0.1, count: $0.2), compressor: c) }
            }
        }
        return await withTaskGroup(of: [(Int, PreparedBlob)].self) { group in
            for lane in 0..<lanes {
                group.addTask {
                    self.compressors.with { c in
                        stride(from: lane, to: work.count, by: lanes).map { i in
                            let w = work[i]
                            return (i, PreparedBlob.make(id: w.0, kind: .data, plaintext: UnsafeRawBufferPointer(start: base.value + w.1, count: w.2), compressor: c))
                        }
                    }
                }
            }
            var out = [PreparedBlob?](repeating: nil, count: work.count)
            for await part in group { for (i, b) in part { out[i] = b } }
            return out.map { $0! }
        }
    }
}
