import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// Writes regular files: each as a `PendingFile` (temporary name, renamed into place when complete), its
/// content fetched from the repository in batches of chunks, two batches at a time per file, or for small
/// files of one folder in groups whose chunks come in one request; then its metadata.
struct FileWriter: Sendable {
    let repository: any BlobRepository
    let planner: RestorePlanner
    let metadata: LinksAndMetadata
    let tally: RestoreTally

    /// Small files of one directory are restored in groups whose chunks come in one repository request: over
    /// the network, a round trip (and the relay's per-request work) per small file would dominate.
    static let groupChunks = 64
    static let groupBytes = 16 << 20
    static let groupFiles = 64

    static func isSmall(_ node: Node) -> Bool {
        node.type == .file && node.size <= 4 << 20 && node.extents.count <= 4
    }

    /// `newFolder`: the folder was created by this restore, so nothing can be in the file's way but what
    /// appears meanwhile (which the rename never replaces): no look-up before creating.
    func restoreFile(_ node: Node, parentFD: Int32, components: [[UInt8]], newFolder: Bool = false) async {
        do {
            guard let file = try createFile(node, in: parentFD, components: components, newFolder: newFolder) else { return }
            await writeFile(node, file, components: components, prefetched: nil)
        } catch let e as ArchiveError where e.stopsTheRestore {
            tally.stop(e)
        } catch {
            tally.fail(components, "\(error)")
        }
    }

    /// Restores a batch of small files (of one folder or several), fetching the chunks of those it creates with
    /// one request. Files skipped (they exist, with --skip) fetch nothing; if the shared fetch fails, each file is
    /// restored on its own, so one bad chunk fails only the files that need it. Each file's folder is released
    /// once the file is done (or not reached: the restore is stopping).
    func restoreSmallFiles(_ group: SmallFileQueue.Batch) async {
        defer { for (_, _, folder) in group { folder.release() } }
        var open: [(Node, [[UInt8]], PendingFile)] = []
        for (node, components, folder) in group {
            if tally.stopped { break }
            do {
                if let file = try createFile(node, in: folder.fd, components: components, newFolder: folder.isNew) {
                    open.append((node, components, file))
                }
            } catch let e as ArchiveError where e.stopsTheRestore {
                tally.stop(e)
            } catch {
                tally.fail(components, "\(error)")
            }
        }
        // Files not reached (the restore is stopping) leave nothing behind; `discard` after `writeFile` is a no-op.
        defer { for (_, _, file) in open { file.discard() } }
        var ids: [BlobID] = []
        var seen = Set<BlobID>()
        for (node, _, _) in open {
            for e in node.extents { if case .chunk(let id, _) = e, seen.insert(id).inserted { ids.append(id) } }
        }
        var chunks: [BlobID: [UInt8]]? = [:]
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
            if tally.stopped { break }
            await writeFile(node, file, components: components, prefetched: chunks)
        }
    }

    /// Writes a created file's content (from `prefetched` when given, else fetched now) and its metadata, and
    /// puts it in place; on any failure the temporary file is removed, so the file's name never holds a part.
    private func writeFile(_ node: Node, _ file: PendingFile, components: [[UInt8]], prefetched: [BlobID: [UInt8]]?) async {
        do {
            defer { file.discard() }
            let path = tally.display(components)
            if let prefetched {
                try writePrefetched(node, fd: file.fd, path: path, chunks: prefetched)
            } else {
                try await writeContent(node, fd: file.fd, path: path)
            }
            var st = stat()
            guard fstat(file.fd, &st) == 0 else { throw ArchiveError.system(errno, "checking", path) }
            guard UInt64(st.st_size) == node.size else {
                throw ArchiveError(
                    .io,
                    "\(path) holds \(st.st_size) bytes after it was written, the recovery point says \(node.size); it was not put in place — run the restore again"
                )
            }
            metadata.applyMetadata(node, fd: file.fd, components: components, current: st)
            guard try putInPlace(file, components: components) else { return }
            metadata.markRestored(components)
            tally.count {
                $0.files += 1
                // Sizes of sparse files may be huge: the total saturates rather than trap.
                let (sum, overflow) = $0.bytes.addingReportingOverflow(Int64(node.size))
                $0.bytes = overflow ? .max : sum
            }
        } catch let e as ArchiveError where e.stopsTheRestore {
            tally.stop(e)
        } catch {
            tally.fail(components, "\(error)")
        }
    }

    /// Decides what an entry already under the file's name means (skip, refuse, or replace it later), then
    /// creates the temporary file. Nil: skipped.
    private func createFile(_ node: Node, in parentFD: Int32, components: [[UInt8]], newFolder: Bool) throws -> PendingFile? {
        let name = node.name
        var st = stat()
        if !newFolder, FS.withCPath(name, { fstatat(parentFD, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 {
            switch try planner.resolve(conflict: "\(tally.display(components)) already exists") {
            case .skip:
                tally.skipped()
                return nil
            case .replace:
                break  // replaced when the new file is complete
            }
        }
        do { return try PendingFile.create(name, in: parentFD, mode: mode_t(node.mode) & 0o777) } catch {
            throw ArchiveError.system(error.code, "creating", tally.display(components))
        }
    }

    /// Renames a complete file to its own name. Without --overwrite the rename never replaces an entry that
    /// appeared meanwhile (RENAME_NOREPLACE). False: skipped (--skip and something is there now).
    private func putInPlace(_ file: PendingFile, components: [[UInt8]]) throws -> Bool {
        let path = tally.display(components)
        do { try file.close() } catch { throw ArchiveError.system(error.code, "writing", path) }
        let replacing = planner.existing == .overwrite
        var r = file.rename(replacing: replacing)
        if r != 0 && errno == EEXIST && !replacing {
            if planner.existing == .refuse { throw ArchiveError(.conflict, "\(path) already exists") }
            tally.skipped()
            return false
        }
        if r != 0 && (errno == EISDIR || errno == ENOTEMPTY || errno == EEXIST) {
            // A directory is in the way: an empty one is replaced, as a file or link would be.
            try RestorePlanner.removeExisting(file.name, in: file.parentFD, path: path)
            r = file.rename(replacing: replacing)
        }
        if r != 0 { throw ArchiveError.system(errno, "putting in place", path) }
        file.markPlaced()
        return true
    }

    /// Removes the files an interrupted restore left in a folder that existed before this one.
    func removeLeftovers(_ tree: Tree, fd dirFD: Int32, components: [[UInt8]]) {
        for name in PendingFile.removeLeftovers(in: dirFD, keeping: tree) {
            tally.info("\(tally.display(components + [name])): removed, a file left by an interrupted restore")
        }
    }

    /// Where each chunk of a file goes. Every sum is checked: a damaged or hostile tree may list extents (holes of
    /// up to 2^63 bytes each) that add up to more than a file can hold, and that is a failed file, never a trap.
    static func layout(_ node: Node, path: String) throws -> [(BlobID, Int64, Int)] {
        func damaged(_ why: String) -> ArchiveError {
            ArchiveError(
                .damaged,
                "\(path) cannot be restored: the recovery point is damaged (\(why)); the other files are restored, and `outpost check` examines the store"
            )
        }
        guard node.size <= UInt64(Int64.max) else { throw damaged("its size, \(node.size) bytes, is more than a file can hold") }
        var offset: Int64 = 0
        var pieces: [(BlobID, Int64, Int)] = []
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

    private func writeContent(_ node: Node, fd: Int32, path: String) async throws {
        let pieces = try Self.layout(node, path: path)
        // Batches of up to 8 chunks (32 MiB at most): one round trip each to a remote repository.
        var batches: [[(BlobID, Int64, Int)]] = []
        var current: [(BlobID, Int64, Int)] = []
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
                        for i in stride(from: lane, to: work.count, by: lanes) { try await writeBatch(work[i], fd: fd, path: path) }
                    }
                }
                try await group.waitForAll()
            }
        }
        try setSize(node, pieces: pieces, fd: fd, path: path)
    }

    /// Sets the file's size when its chunks do not reach its end (a trailing hole); a file the chunks fill has it.
    private func setSize(_ node: Node, pieces: [(BlobID, Int64, Int)], fd: Int32, path: String) throws {
        let end = pieces.last.map { $0.1 + Int64($0.2) } ?? 0
        guard UInt64(end) != node.size else { return }
        if ftruncate(fd, off_t(node.size)) != 0 { throw ArchiveError.system(errno, "setting the size of", path) }
    }

    private func writeBatch(_ batch: [(BlobID, Int64, Int)], fd: Int32, path: String) async throws {
        try write(batch, datas: try await repository.loadMany(batch.map(\.0)), fd: fd, path: path)
    }

    /// Writes a small file whose chunks were fetched with its group.
    private func writePrefetched(_ node: Node, fd: Int32, path: String, chunks: [BlobID: [UInt8]]) throws {
        let pieces = try Self.layout(node, path: path)
        let datas = try pieces.map { piece in
            guard let data = chunks[piece.0] else {
                throw ArchiveError(
                    .io,
                    "chunk \(piece.0.shortHex) of \(path) did not come back from the repository; run the restore again with --skip to finish the other files"
                )
            }
            return data
        }
        try write(pieces, datas: datas, fd: fd, path: path)
        try setSize(node, pieces: pieces, fd: fd, path: path)
    }

    private func write(_ batch: [(BlobID, Int64, Int)], datas: [[UInt8]], fd: Int32, path: String) throws {
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
            tally.wrote(Int64(length))
        }
    }
}

/// Small files of one folder collected for `FileWriter.restoreSmallFiles`, up to `FileWriter.groupChunks`
/// chunks, `groupBytes` bytes and `groupFiles` files.
struct SmallFileGroup {
    private(set) var files: SmallFileQueue.Batch = []
    private var chunks = 0
    private var bytes = 0

    var isEmpty: Bool { files.isEmpty }

    /// Adding `node` would make the group too big: send it first.
    func isFull(adding node: Node) -> Bool {
        chunks + node.extents.count > FileWriter.groupChunks || bytes + Int(node.size) > FileWriter.groupBytes
            || files.count >= FileWriter.groupFiles
    }

    mutating func add(_ node: Node, _ components: [[UInt8]], _ folder: OpenFolder) {
        files.append((node, components, folder))
        chunks += node.extents.count
        bytes += Int(node.size)
    }

    /// The files, leaving the group empty.
    mutating func take() -> SmallFileQueue.Batch {
        defer { self = SmallFileGroup() }
        return files
    }
}
