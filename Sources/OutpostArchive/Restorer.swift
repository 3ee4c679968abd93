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

    public init(target: String, include: [String] = [], existing: ExistingEntries = .refuse,
                restoreOwnership: Bool = geteuid() == 0, workers: Int = ProcessInfo.processInfo.activeProcessorCount * 2) {
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

/// Restores a recovery point (or some paths of it) into a target directory.
///
/// Every entry is created relative to an open descriptor of its parent directory, with O_NOFOLLOW and names
/// checked by `Tree.decode`: whatever a damaged or hostile store holds, nothing is written outside the target.
/// Files are written by a bounded pool of workers; a directory's metadata is applied after its content.
public final class Restorer: Sendable {
    let repository: any BlobRepository
    let point: RecoveryPointInfo
    let options: RestoreOptions
    let logger: Logger
    private let result = Mutex(RestoreResult())
    private let restoredFiles = Mutex(Set<[UInt8]>())
    private let hardlinks = Mutex<[(parent: [[UInt8]], parentMtime: Int64?, node: Node)]>([])
    private let slots: AsyncSemaphore
    private let fatal = Mutex<(any Error)?>(nil)
    public let progressBytes = Atomic<Int64>(0)

    public init(repository: any BlobRepository, point: RecoveryPointInfo, options: RestoreOptions, logger: Logger = Logger(label: "outpost.restore")) {
        self.repository = repository
        self.point = point
        self.options = options
        self.logger = logger
        slots = AsyncSemaphore(permits: options.workers)
    }

    /// Which part of the tree a path is in, given the `include` list.
    struct Filter: Sendable {
        let includes: [[[UInt8]]]
        enum Decision { case all, ancestor, none }
        func decide(_ components: [[UInt8]]) -> Decision {
            if includes.isEmpty { return .all }
            var ancestor = false
            for inc in includes {
                if components.count >= inc.count && Array(components[0..<inc.count]) == inc { return .all }
                if components.count < inc.count && Array(inc[0..<components.count]) == components { ancestor = true }
            }
            return ancestor ? .ancestor : .none
        }
    }

    public func run() async throws -> RestoreResult {
        guard let rootID = point.point.root else { throw ArchiveError(.notFound, "recovery point \(point.id.shortHex) has no root tree") }
        let filter = Filter(includes: options.include.map { FS.absolute($0).split(separator: "/").map { Array($0.utf8) } })
        let root = try await loadTree(rootID)
        for inc in filter.includes where !(try await exists(inc, in: root)) {
            throw ArchiveError(.notFound, "\("/" + inc.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")) is not in recovery point \(point.id.shortHex); list its content with `outpost ls`")
        }
        let target = FS.absolute(options.target)
        do { try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true) }
        catch { throw ArchiveError(.io, "cannot create the restore target \(target): \(error.localizedDescription)") }
        let targetFD = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if targetFD < 0 { throw ArchiveError.system(errno, "opening the restore target", target) }
        defer { close(targetFD) }
        if options.existing == .refuse, let names = try? FileManager.default.contentsOfDirectory(atPath: target), !names.isEmpty {
            var conflicts: [String] = []
            try await findConflicts(root, dirPath: target, components: [], filter: filter, into: &conflicts)
            if !conflicts.isEmpty {
                let shown = conflicts.prefix(5).joined(separator: ", ")
                throw ArchiveError(.conflict, "the target already holds \(conflicts.count) of the entries to restore (\(shown)\(conflicts.count > 5 ? ", …" : "")); nothing was written: restore into an empty directory, or pass --overwrite or --skip")
            }
        }
        try await restoreDirectory(root, fd: targetFD, existed: true, components: [], mtime: nil, filter: filter)
        try await linkHardlinks(targetFD: targetFD)
        if let e = fatal.withLock({ $0 }) { throw e }
        return result.withLock { $0 }
    }

    private func exists(_ components: [[UInt8]], in root: Tree) async throws -> Bool {
        var tree = root
        for (i, c) in components.enumerated() {
            guard let n = tree.node(named: c) else { return false }
            if i == components.count - 1 { return true }
            guard n.type == .directory, let sub = n.subtree else { return false }
            tree = try await loadTree(sub)
        }
        return true
    }

    private func loadTree(_ id: ChunkID) async throws -> Tree {
        try await TreeWalker(repository: repository).tree(id)
    }

    private func findConflicts(_ tree: Tree, dirPath: String, components: [[UInt8]], filter: Filter, into out: inout [String]) async throws {
        for node in tree.nodes {
            let comps = components + [node.name]
            let decision = filter.decide(comps)
            if decision == .none { continue }
            let path = dirPath + "/" + node.nameString
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            if node.type == .directory && (st.st_mode & S_IFMT) == S_IFDIR {
                if let sub = node.subtree { try await findConflicts(try await loadTree(sub), dirPath: path, components: comps, filter: filter, into: &out) }
            } else {
                out.append(path)
            }
            if out.count > 100 { return }
        }
    }

    // MARK: Walking

    /// Small files of one directory are restored in groups whose chunks come in one repository request: over
    /// the network, a round trip (and the relay's per-request work) per small file would dominate.
    static let groupChunks = 16
    static let groupBytes = 16 << 20
    static let groupFiles = 32

    static func isSmall(_ node: Node) -> Bool {
        node.type == .file && node.size <= 4 << 20 && node.extents.count <= 4
    }

    private func restoreDirectory(_ tree: Tree, fd dirFD: Int32, existed: Bool, components: [[UInt8]], mtime: Int64?, filter: Filter) async throws {
        if existed { removeLeftovers(tree, fd: dirFD, components: components) }
        await withTaskGroup(of: Void.self) { files in
            var group: [(Node, [[UInt8]])] = []
            var groupChunks = 0
            var groupBytes = 0
            func dispatch() async {
                guard !group.isEmpty, fatal.withLock({ $0 == nil }) else { return }
                let batch = group
                group = []
                groupChunks = 0
                groupBytes = 0
                await slots.acquire()
                files.addTask {
                    defer { self.slots.release() }
                    await self.restoreSmallFiles(batch, parentFD: dirFD)
                }
            }
            for node in tree.nodes {
                if fatal.withLock({ $0 != nil }) { break }
                let comps = components + [node.name]
                let decision = filter.decide(comps)
                if decision == .none { continue }
                do {
                    switch node.type {
                    case .directory:
                        try await restoreSubdirectory(node, parentFD: dirFD, components: comps, filter: filter)
                    case .file where Self.isSmall(node):
                        let chunks = node.extents.count
                        if groupChunks + chunks > Self.groupChunks || groupBytes + Int(node.size) > Self.groupBytes
                            || group.count >= Self.groupFiles { await dispatch() }
                        group.append((node, comps))
                        groupChunks += chunks
                        groupBytes += Int(node.size)
                    case .file:
                        await slots.acquire()
                        files.addTask {
                            defer { self.slots.release() }
                            await self.restoreFile(node, parentFD: dirFD, components: comps)
                        }
                    case .hardlink:
                        hardlinks.withLock { $0.append((components, mtime, node)) }
                    case .symlink, .fifo, .socket, .characterDevice, .blockDevice:
                        try restoreSpecial(node, parentFD: dirFD, components: comps)
                    }
                } catch let e as ArchiveError where e.code == .diskFull {
                    setFatal(e)
                } catch {
                    fail(comps, "\(error)")
                }
            }
            await dispatch()
            await files.waitForAll()
        }
    }

    /// Restores a group of small files of one directory, fetching the chunks of those it creates with one
    /// request. Files skipped (they exist, with --skip) fetch nothing; if the shared fetch fails, each file is
    /// restored on its own, so one bad chunk fails only the files that need it.
    private func restoreSmallFiles(_ group: [(Node, [[UInt8]])], parentFD: Int32) async {
        var open: [(Node, [[UInt8]], PendingFile)] = []
        for (node, components) in group {
            if fatal.withLock({ $0 != nil }) { break }
            do {
                if let file = try createFile(node.name, in: parentFD, components: components) { open.append((node, components, file)) }
            } catch let e as ArchiveError where e.code == .diskFull {
                setFatal(e)
            } catch {
                fail(components, "\(error)")
            }
        }
        // Files not reached (the restore is stopping) leave nothing behind; `discard` after `writeFile` is a no-op.
        defer { for (_, _, file) in open { file.discard() } }
        var ids: [ChunkID] = []
        var seen = Set<ChunkID>()
        for (node, _, _) in open {
            for e in node.extents { if case .chunk(let id, _) = e, seen.insert(id).inserted { ids.append(id) } }
        }
        var chunks: [ChunkID: [UInt8]]? = [:]
        do {
            var start = 0
            while start < ids.count {
                let slice = Array(ids[start..<min(ids.count, start + Self.groupChunks)])
                for (id, data) in zip(slice, try await repository.loadMany(slice)) { chunks?[id] = data }
                start += slice.count
            }
        } catch {
            chunks = nil
        }
        for (node, components, file) in open {
            if fatal.withLock({ $0 != nil }) { break }
            await writeFile(node, file, components: components, prefetched: chunks)
        }
    }

    private func restoreSubdirectory(_ node: Node, parentFD: Int32, components: [[UInt8]], filter: Filter) async throws {
        guard let (fd, existed) = try openDirectory(node.name, in: parentFD, components: components) else { return }
        defer { close(fd) }
        if let sub = node.subtree {
            try await restoreDirectory(try await loadTree(sub), fd: fd, existed: existed, components: components, mtime: node.mtimeNanos, filter: filter)
        }
        applyMetadata(node, fd: fd, components: components)
        result.withLock { $0.directories += 1 }
    }

    /// Creates (or, when allowed, reuses) a directory and opens it without following links. `existed`: it was
    /// there before (so it may hold leftovers of an interrupted restore).
    private func openDirectory(_ name: [UInt8], in parentFD: Int32, components: [[UInt8]]) throws -> (fd: Int32, existed: Bool)? {
        let made = FS.withCPath(name) { mkdirat(parentFD, $0, 0o700) }
        if made != 0 && errno != EEXIST { throw ArchiveError.system(errno, "creating directory", display(components)) }
        var existed = made != 0
        var fd = FS.withCPath(name) { openat(parentFD, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        if fd < 0 && (errno == ENOTDIR || errno == ELOOP) {
            // Something that is not a directory is in the way.
            switch options.existing {
            case .overwrite:
                if FS.withCPath(name, { unlinkat(parentFD, $0, 0) }) != 0 { throw ArchiveError.system(errno, "removing", display(components)) }
                if FS.withCPath(name, { mkdirat(parentFD, $0, 0o700) }) != 0 { throw ArchiveError.system(errno, "creating directory", display(components)) }
                existed = false
                fd = FS.withCPath(name) { openat(parentFD, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            case .skip:
                result.withLock { $0.skipped += 1 }
                return nil
            case .refuse:
                throw ArchiveError(.conflict, "\(display(components)) exists and is not a directory")
            }
        }
        if fd < 0 { throw ArchiveError.system(errno, "opening directory", display(components)) }
        return (fd, existed)
    }

    private func restoreFile(_ node: Node, parentFD: Int32, components: [[UInt8]]) async {
        do {
            guard let file = try createFile(node.name, in: parentFD, components: components) else { return }
            await writeFile(node, file, components: components, prefetched: nil)
        } catch let e as ArchiveError where e.code == .diskFull {
            setFatal(e)
        } catch {
            fail(components, "\(error)")
        }
    }

    /// Writes a created file's content (from `prefetched` when given, else fetched now) and its metadata, and
    /// puts it in place; on any failure the temporary file is removed, so the file's name never holds a part.
    private func writeFile(_ node: Node, _ file: PendingFile, components: [[UInt8]], prefetched: [ChunkID: [UInt8]]?) async {
        do {
            defer { file.discard() }
            let path = display(components)
            if let prefetched {
                try writePrefetched(node, fd: file.fd, path: path, chunks: prefetched)
            } else {
                try await writeContent(node, fd: file.fd, components: components)
            }
            var st = stat()
            guard fstat(file.fd, &st) == 0 else { throw ArchiveError.system(errno, "checking", path) }
            guard UInt64(st.st_size) == node.size else {
                throw ArchiveError(.io, "\(path) holds \(st.st_size) bytes after it was written, the recovery point says \(node.size); it was not put in place — run the restore again")
            }
            applyMetadata(node, fd: file.fd, components: components)
            guard try putInPlace(file, components: components) else { return }
            restoredFiles.withLock { _ = $0.insert(Self.pointPath(components)) }
            result.withLock {
                $0.files += 1
                // Sizes of sparse files may be huge: the total saturates rather than trap.
                let (sum, overflow) = $0.bytes.addingReportingOverflow(Int64(node.size))
                $0.bytes = overflow ? .max : sum
            }
        } catch let e as ArchiveError where e.code == .diskFull {
            setFatal(e)
        } catch {
            fail(components, "\(error)")
        }
    }

    /// A regular file being restored. It is written under a hidden temporary name in its folder (created
    /// O_EXCL, 0600 until its metadata is set) and renamed to its own name only when complete: an interrupted,
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

        /// Closes the descriptor; its error is the last word on whether the data was written (NFS, quotas).
        func close() throws(Errno) {
            guard fd >= 0 else { return }
            let r = Glibc.close(fd)
            fd = -1
            if r != 0 && errno != EINTR { throw Errno(errno) }
        }

        func markPlaced() { placed = true }

        /// Removes the temporary file unless it was put in place; safe to call more than once.
        func discard() {
            if fd >= 0 { _ = Glibc.close(fd); fd = -1 }
            if !placed { _ = FS.withCPath(tempName) { unlinkat(parentFD, $0, 0) }; placed = true }
        }
    }

    /// Temporary names of files being restored: hidden, and unlike any name a restore would leave behind
    /// (`.outpost-restore-` and 16 hex digits). Leftovers of an interrupted run are removed by the next one.
    static let temporaryPrefix = Array(".outpost-restore-".utf8)

    static func isTemporaryName(_ name: [UInt8]) -> Bool {
        guard name.count == temporaryPrefix.count + 16, name.starts(with: temporaryPrefix) else { return false }
        return name.dropFirst(temporaryPrefix.count).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// Decides what an entry already under the file's name means (skip, refuse, or replace it later), then
    /// creates the temporary file. Nil: skipped.
    private func createFile(_ name: [UInt8], in parentFD: Int32, components: [[UInt8]]) throws -> PendingFile? {
        var st = stat()
        if FS.withCPath(name, { fstatat(parentFD, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 {
            switch options.existing {
            case .skip:
                result.withLock { $0.skipped += 1 }
                return nil
            case .refuse:
                throw ArchiveError(.conflict, "\(display(components)) already exists")
            case .overwrite:
                break // replaced when the new file is complete
            }
        }
        let flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC
        while true {
            var temp = Self.temporaryPrefix
            let digits = Array("0123456789abcdef".utf8)
            var bits = UInt64.random(in: .min ... .max)
            for _ in 0..<16 { temp.append(digits[Int(bits & 15)]); bits >>= 4 }
            let fd = FS.withCPath(temp) { openat(parentFD, $0, flags, 0o600) }
            if fd >= 0 { return PendingFile(parentFD: parentFD, name: name, tempName: temp, fd: fd) }
            if errno != EEXIST { throw ArchiveError.system(errno, "creating", display(components)) }
        }
    }

    /// Renames a complete file to its own name. Without --overwrite the rename never replaces an entry that
    /// appeared meanwhile (RENAME_NOREPLACE). False: skipped (--skip and something is there now).
    private func putInPlace(_ file: PendingFile, components: [[UInt8]]) throws -> Bool {
        let path = display(components)
        do { try file.close() } catch { throw ArchiveError.system(error.code, "writing", path) }
        func rename() -> Int32 {
            FS.withCPath(file.tempName) { t in
                FS.withCPath(file.name) { n in
                    options.existing == .overwrite ? renameat(file.parentFD, t, file.parentFD, n) : outpost_renameat_noreplace(file.parentFD, t, file.parentFD, n)
                }
            }
        }
        var r = rename()
        if r != 0 && errno == EEXIST && options.existing != .overwrite {
            if options.existing == .refuse { throw ArchiveError(.conflict, "\(path) already exists") }
            result.withLock { $0.skipped += 1 }
            return false
        }
        if r != 0 && (errno == EISDIR || errno == ENOTEMPTY || errno == EEXIST) {
            // A directory is in the way: an empty one is replaced, as a file or link would be.
            try removeExisting(file.name, in: file.parentFD, components: components)
            r = rename()
        }
        if r != 0 { throw ArchiveError.system(errno, "putting in place", path) }
        file.markPlaced()
        return true
    }

    /// Removes temporary files an interrupted restore left in a folder it is now restoring into. Only names of
    /// the temporary form that are regular files and not entries of the recovery point's folder are touched.
    private func removeLeftovers(_ tree: Tree, fd dirFD: Int32, components: [[UInt8]]) {
        let listFD = dup(dirFD)
        guard listFD >= 0, let dir = fdopendir(listFD) else { if listFD >= 0 { close(listFD) }; return }
        defer { closedir(dir) }
        var leftovers: [[UInt8]] = []
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: &ent.pointee.d_name) { p in
                p.withMemoryRebound(to: CChar.self, capacity: 256) { Array(UnsafeRawBufferPointer(start: $0, count: strlen($0))) }
            }
            if Self.isTemporaryName(name) && tree.node(named: name) == nil { leftovers.append(name) }
        }
        for name in leftovers {
            var st = stat()
            guard FS.withCPath(name, { fstatat(dirFD, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            if FS.withCPath(name, { unlinkat(dirFD, $0, 0) }) == 0 {
                logger.info("\(display(components + [name])): removed, a file left by an interrupted restore")
            }
        }
    }

    /// Removes a file or link (never a non-empty directory) that stands where an entry is restored.
    private func removeExisting(_ name: [UInt8], in parentFD: Int32, components: [[UInt8]]) throws {
        var st = stat()
        guard FS.withCPath(name, { fstatat(parentFD, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else { return }
        let isDir = (st.st_mode & S_IFMT) == S_IFDIR
        if FS.withCPath(name, { unlinkat(parentFD, $0, isDir ? AT_REMOVEDIR : 0) }) != 0 {
            throw ArchiveError.system(errno, isDir ? "removing the directory in the way at" : "removing", display(components))
        }
    }

    /// Where each chunk of a file goes. Every sum is checked: a damaged or hostile tree may list extents (holes of
    /// up to 2^63 bytes each) that add up to more than a file can hold, and that is a failed file, never a trap.
    static func layout(_ node: Node, path: String) throws -> [(ChunkID, Int64, Int)] {
        func damaged(_ why: String) -> ArchiveError {
            ArchiveError(.damaged, "\(path) cannot be restored: the recovery point is damaged (\(why)); the other files are restored, and `outpost check` examines the store")
        }
        guard node.size <= UInt64(Int64.max) else { throw damaged("its size, \(node.size) bytes, is more than a file can hold") }
        var offset: Int64 = 0
        var pieces: [(ChunkID, Int64, Int)] = []
        for e in node.extents {
            guard e.length >= 0 else { throw damaged("an extent has a negative length") }
            if case .chunk(let id, let len) = e { pieces.append((id, offset, len)) }
            let (next, overflow) = offset.addingReportingOverflow(Int64(e.length))
            guard !overflow else { throw damaged("its extents add up to more than a file can hold") }
            offset = next
        }
        guard UInt64(offset) == node.size else { throw damaged("its extents add up to \(offset) bytes, its size is \(node.size)") }
        return pieces
    }

    private func writeContent(_ node: Node, fd: Int32, components: [[UInt8]]) async throws {
        let path = display(components)
        let pieces = try Self.layout(node, path: path)
        // Batches of up to 8 chunks (32 MiB at most): one round trip each to a remote repository.
        var batches: [[(ChunkID, Int64, Int)]] = []
        var current: [(ChunkID, Int64, Int)] = []
        var bytes = 0
        for p in pieces {
            if current.count == 8 || bytes + p.2 > 32 << 20 { batches.append(current); current = []; bytes = 0 }
            current.append(p)
            bytes += p.2
        }
        if !current.isEmpty { batches.append(current) }
        let work = batches
        let lanes = min(work.count, 2)
        if lanes <= 1 {
            for b in work { try await writeBatch(b, fd: fd, path: path) }
        } else {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<lanes {
                    group.addTask {
                        for i in stride(from: lane, to: work.count, by: lanes) { try await self.writeBatch(work[i], fd: fd, path: path) }
                    }
                }
                try await group.waitForAll()
            }
        }
        if ftruncate(fd, off_t(node.size)) != 0 { throw ArchiveError.system(errno, "setting the size of", path) }
    }

    private func writeBatch(_ batch: [(ChunkID, Int64, Int)], fd: Int32, path: String) async throws {
        try write(batch, datas: try await repository.loadMany(batch.map(\.0)), fd: fd, path: path)
    }

    /// Writes a small file whose chunks were fetched with its group.
    private func writePrefetched(_ node: Node, fd: Int32, path: String, chunks: [ChunkID: [UInt8]]) throws {
        let pieces = try Self.layout(node, path: path)
        let datas = try pieces.map { piece in
            guard let data = chunks[piece.0] else { throw ArchiveError(.io, "chunk \(piece.0.shortHex) of \(path) did not come back from the repository") }
            return data
        }
        try write(pieces, datas: datas, fd: fd, path: path)
        if ftruncate(fd, off_t(node.size)) != 0 { throw ArchiveError.system(errno, "setting the size of", path) }
    }

    private func write(_ batch: [(ChunkID, Int64, Int)], datas: [[UInt8]], fd: Int32, path: String) throws {
        for (piece, data) in zip(batch, datas) {
            let (id, offset, length) = piece
            guard data.count == length else {
                throw ArchiveError(.io, "chunk \(id.shortHex) of \(path) has \(data.count) bytes, the tree says \(length)")
            }
            try data.withUnsafeBytes { buf in
                var done = 0
                while done < buf.count {
                    let n = pwrite(fd, buf.baseAddress! + done, buf.count - done, off_t(offset) + off_t(done))
                    if n < 0 { if errno == EINTR { continue }; throw ArchiveError.system(errno, "writing", path) }
                    done += n
                }
            }
            progressBytes.add(Int64(length), ordering: .relaxed)
        }
    }

    private func restoreSpecial(_ node: Node, parentFD: Int32, components: [[UInt8]]) throws {
        let path = display(components)
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
            result.withLock { $0.skipped += 1 }
            return
        }
        if (node.type == .characterDevice || node.type == .blockDevice) && geteuid() != 0 {
            fail(components, "device nodes can only be restored as root; skipped")
            return
        }
        var r = create()
        if r != 0 && errno == EEXIST {
            switch options.existing {
            case .skip: result.withLock { $0.skipped += 1 }; return
            case .refuse: throw ArchiveError(.conflict, "\(path) already exists")
            case .overwrite:
                try removeExisting(node.name, in: parentFD, components: components)
                r = create()
            }
        }
        if r != 0 { throw ArchiveError.system(errno, "creating", path) }
        options.hooks.afterCreate?(components)
        applySpecialMetadata(node, parentFD: parentFD, components: components)
        result.withLock { $0.otherEntries += 1 }
    }

    /// Owner, mode and times of a symlink, FIFO or device node, set through an O_PATH descriptor opened without
    /// following links (a device's driver is not called) and checked to be the entry just created: whoever can
    /// write to the folder may have swapped the name for a symlink or a hard link to a file elsewhere, and
    /// nothing reached that way may change. (`fchmodat` follows symlinks; glibc's AT_SYMLINK_NOFOLLOW emulation
    /// needs 2.32 and still checks by name.)
    private func applySpecialMetadata(_ node: Node, parentFD: Int32, components: [[UInt8]]) {
        let fd = FS.withCPath(node.name) { openat(parentFD, $0, outpost_O_PATH | O_NOFOLLOW | O_CLOEXEC) }
        guard fd >= 0 else { fail(components, "owner, mode and times not restored: \(Errno(errno).message)"); return }
        defer { close(fd) }
        var st = stat()
        let isDevice = node.type == .characterDevice || node.type == .blockDevice
        guard fstat(fd, &st) == 0, FS.type(of: st) == node.type, st.st_nlink == 1,
              !isDevice || UInt64(st.st_rdev) == node.rdev else {
            fail(components, "was replaced while it was being restored; its owner, mode and times were not set")
            return
        }
        if options.restoreOwnership {
            let (uid, gid) = owner(node)
            if outpost_fchown_opath(fd, uid, gid) != 0 { fail(components, "owner not restored: \(Errno(errno).message)") }
        }
        if node.type != .symlink, outpost_fchmod_opath(fd, mode_t(node.mode)) != 0 {
            fail(components, "mode not restored: \(Errno(errno).message)")
        }
        var times = [FS.timespec(nanos: node.mtimeNanos), FS.timespec(nanos: node.mtimeNanos)]
        if outpost_utimens_opath(fd, Int64(times[0].tv_sec), times[0].tv_nsec) != 0 {
            // Kernels without AT_EMPTY_PATH for utimensat: a symlink's times by name, never following it.
            let r = errno == EOPNOTSUPP ? FS.withCPath(node.name) { utimensat(parentFD, $0, &times, AT_SYMLINK_NOFOLLOW) } : -1
            if r != 0 { fail(components, "times not restored: \(Errno(errno).message)") }
        }
    }

    private func owner(_ node: Node) -> (uid_t, gid_t) {
        (OwnerNames.uid(named: node.user) ?? node.uid, OwnerNames.gid(named: node.group) ?? node.gid)
    }

    /// Owner, mode, xattrs and times, in that order (chown clears set-id bits; times last).
    private func applyMetadata(_ node: Node, fd: Int32, components: [[UInt8]]) {
        if options.restoreOwnership {
            let (uid, gid) = owner(node)
            if fchown(fd, uid, gid) != 0 { fail(components, "owner not restored: \(Errno(errno).message)") }
        }
        for x in node.xattrs {
            let r = FS.withCPath(x.name) { n in x.value.withUnsafeBytes { outpost_fsetxattr(fd, n, $0.baseAddress, x.value.count) } }
            if r != 0 { fail(components, "extended attribute \(String(decoding: x.name, as: UTF8.self)) not restored: \(Errno(errno).message)") }
        }
        if fchmod(fd, mode_t(node.mode)) != 0 { fail(components, "mode not restored: \(Errno(errno).message)") }
        var times = [FS.timespec(nanos: node.mtimeNanos), FS.timespec(nanos: node.mtimeNanos)]
        if futimens(fd, &times) != 0 { fail(components, "times not restored: \(Errno(errno).message)") }
    }

    // MARK: Hard links

    /// Links each hard link to its first occurrence when that was restored in this run; otherwise writes its
    /// content. Both ends are reached through O_NOFOLLOW directory descriptors from the target.
    private func linkHardlinks(targetFD: Int32) async throws {
        let links = hardlinks.withLock { $0 }
        for (parent, parentMtime, node) in links {
            let comps = parent + [node.name]
            guard let parentFD = openPath(parent, from: targetFD) else { fail(comps, "its folder could not be opened"); continue }
            defer {
                // Adding the link changed the folder's mtime: put the backed-up one back.
                if let parentMtime {
                    var times = [FS.timespec(nanos: parentMtime), FS.timespec(nanos: parentMtime)]
                    futimens(parentFD, &times)
                }
                close(parentFD)
            }
            let targetComps = node.linkTarget.split(separator: 0x2f).map(Array.init)
            let firstRestored = restoredFiles.withLock { $0.contains(Self.pointPath(targetComps)) }
            if firstRestored, !targetComps.isEmpty, let srcParent = openPath(Array(targetComps.dropLast()), from: targetFD) {
                defer { close(srcParent) }
                var r = FS.withCPath(targetComps.last!) { s in FS.withCPath(node.name) { d in linkat(srcParent, s, parentFD, d, 0) } }
                if r != 0 && errno == EEXIST && options.existing == .overwrite {
                    try removeExisting(node.name, in: parentFD, components: comps)
                    r = FS.withCPath(targetComps.last!) { s in FS.withCPath(node.name) { d in linkat(srcParent, s, parentFD, d, 0) } }
                }
                if r == 0 { result.withLock { $0.otherEntries += 1 }; continue }
                if errno == EEXIST && options.existing == .skip { result.withLock { $0.skipped += 1 }; continue }
            }
            var copy = node
            copy.type = .file
            await restoreFile(copy, parentFD: parentFD, components: comps)
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

    // MARK: Bookkeeping

    private static func pointPath(_ components: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        for c in components { out.append(0x2f); out += c }
        return out
    }

    private func display(_ components: [[UInt8]]) -> String {
        options.target + String(decoding: Self.pointPath(components), as: UTF8.self)
    }

    private func fail(_ components: [[UInt8]], _ reason: String) {
        let path = display(components)
        logger.warning("\(path): \(reason)")
        result.withLock { $0.failures.append(FailedFile(path: path, reason: reason)) }
    }

    private func setFatal(_ error: any Error) {
        fatal.withLock { if $0 == nil { $0 = error } }
    }
}
