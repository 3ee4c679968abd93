import COutpostSystem
import Foundation
import OutpostCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Reads the files the walker queued, one per worker, each into the worker's own buffer: opens the file
/// relative to the folder the scan saw and checks it is still the file the scan saw, reads its data regions
/// (holes of sparse files are skipped), cuts them with FastCDC, hashes the chunks, compresses the new ones over
/// the cores (lanes) and hands them to the uploader.
struct FileChunker: Sendable {
    let chunker: FastCDC
    let compressors: ResourcePool<ZstdCompressor>
    let uploader: BlobUploader
    let tally: BackupTally
    let hooks: BackupOptions.Hooks
    /// Each worker's read buffer.
    static let bufferSize = 8 << 20

    /// Files up to this size (as the scan saw them) are read in batches: a batch shares one "which are new?"
    /// question and one upload, where a file on its own costs two round trips to a relay.
    static let batchFileSize = 1 << 20
    static let batchFiles = 256

    /// The file's node with its content, or why it was not backed up.
    func process(_ job: FileJob, buffer: UnsafeTransfer<UnsafeMutableRawBufferPointer>) async -> FileResult {
        if let e = tally.fatalError { return .fatal(e) }
        guard let (fd, before) = openChecked(job) else { return .skipped }
        defer { close(fd) }
        return await read(job, fd: fd, before: before, buffer: buffer)
    }

    /// Reads an opened, checked file in buffer-sized regions; the result of `process`.
    private func read(_ job: FileJob, fd: Int32, before: stat, buffer: UnsafeTransfer<UnsafeMutableRawBufferPointer>) async -> FileResult {
        var node = job.node
        do {
            node.extents = try await uploader.withUploads { uploads in
                try await readExtents(fd: fd, st: before, buffer: buffer.value, uploads: &uploads)
            }
        } catch let e as Errno {
            tally.record(job.path, "could not be read: \(e.message)")
            return .skipped
        } catch {
            tally.stop(error)
            return .fatal(error)
        }
        return finish(job, node: node, fd: fd, before: before)
    }

    /// Small files read into one buffer one after the other, their chunks asked about and uploaded together.
    /// A file that turns out sparse, or bigger than the room left, is read on its own afterwards.
    func processBatch(_ jobs: [FileJob], buffer: UnsafeTransfer<UnsafeMutableRawBufferPointer>) async -> [FileResult] {
        if let e = tally.fatalError { return jobs.map { _ in .fatal(e) } }
        let base = buffer.value.baseAddress!
        var results = [FileResult?](repeating: nil, count: jobs.count)
        // Files read on their own after the batch, still open: they are not opened and checked twice.
        var alone: [(index: Int, fd: Int32, before: stat)] = []
        var batched: [(index: Int, fd: Int32, before: stat, offset: Int, length: Int)] = []
        var used = 0
        for (i, job) in jobs.enumerated() {
            guard let (fd, before) = openChecked(job) else { results[i] = .skipped; continue }
            let room = buffer.value.count - used
            if Int64(before.st_blocks) * 512 < Int64(before.st_size) || Int(before.st_size) >= room {
                alone.append((i, fd, before))
                continue
            }
            var have = 0
            var failed: Errno?
            while have < room {
                let n = pread(fd, base + used + have, room - have, off_t(have))
                if n < 0 { if errno == EINTR { continue }; failed = Errno(errno); break }
                if n == 0 { break }
                have += n
            }
            if let failed {
                close(fd)
                tally.record(job.path, "could not be read: \(failed.message)")
                results[i] = .skipped
            } else if have == room {
                alone.append((i, fd, before))  // it grew past the room left: read on its own
            } else {
                tally.progress.bytesRead.add(Int64(have), ordering: .relaxed)
                tally.count { $0.bytesRead += Int64(have) }
                batched.append((i, fd, before, used, have))
                used += have
            }
        }
        // Every file's chunks, cut as a whole file each; one claim, one compression pass and one upload for all.
        var cuts: [(Int, Int)] = []
        var firstCut: [Int] = []
        for f in batched {
            firstCut.append(cuts.count)
            var pos = 0
            while pos < f.length {
                let len = chunker.cut(UnsafeRawBufferPointer(start: base + f.offset + pos, count: min(f.length - pos, chunker.parameters.maxSize)))
                cuts.append((f.offset + pos, len))
                pos += len
            }
        }
        firstCut.append(cuts.count)
        let ids = cuts.map { BlobID.hash(UnsafeRawBufferPointer(start: base + $0.0, count: $0.1)) }
        do {
            try await uploader.withUploads { uploads -> Void in
                let work = try await uploader.claim(ids, cuts: cuts)
                if !work.isEmpty {
                    let blobs = await compress(work, base: UnsafeTransfer(UnsafeRawPointer(base)))
                    try await uploader.upload(blobs, claimed: work.map(\.id), in: &uploads)
                }
            }
        } catch {
            for f in batched { close(f.fd) }
            for f in alone { close(f.fd) }
            tally.stop(error)
            return jobs.map { _ in .fatal(error) }
        }
        for (k, f) in batched.enumerated() {
            var node = jobs[f.index].node
            node.extents = (firstCut[k]..<firstCut[k + 1]).map { .chunk(ids[$0], length: cuts[$0].1) }
            results[f.index] = finish(jobs[f.index], node: node, fd: f.fd, before: f.before)
            close(f.fd)
        }
        for f in alone {
            if let e = tally.fatalError {
                results[f.index] = .fatal(e)
            } else {
                results[f.index] = await read(jobs[f.index], fd: f.fd, before: f.before, buffer: buffer)
            }
            close(f.fd)
        }
        return results.map { $0! }
    }

    /// Opens the file relative to the folder the scan saw and checks it is still the regular file the scan saw;
    /// nil (recorded) when it vanished, was replaced or cannot be opened.
    private func openChecked(_ job: FileJob) -> (Int32, stat)? {
        hooks.beforeOpen?(job.path)
        // Without following a link, and non-blocking: a FIFO swapped in for the file must not hang the backup
        // (opening one for reading waits for a writer).
        let flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
        var fd = FS.withCPath(job.node.name) { openat(job.directory.fd, $0, flags | outpost_O_NOATIME) }
        if fd < 0 && errno == EPERM { fd = FS.withCPath(job.node.name) { openat(job.directory.fd, $0, flags) } }
        if fd < 0 {
            let e = errno
            switch e {
            case ENOENT: tally.record(job.path, "vanished during the backup")
            case ELOOP, ENXIO: tally.record(job.path, "was replaced during the backup; it will be read again next time")
            default: tally.record(job.path, "cannot be read: \(Errno(e).message)")
            }
            return nil
        }
        var before = stat()
        guard fstat(fd, &before) == 0, (before.st_mode & S_IFMT) == S_IFREG, UInt64(before.st_ino) == job.node.inode,
            UInt64(before.st_dev) == job.node.device
        else {
            close(fd)
            tally.record(job.path, "was replaced during the backup; it will be read again next time")
            return nil
        }
        // It is the regular file the scan saw: reads may block (network file systems) as usual.
        let status = fcntl(fd, F_GETFL)
        if status >= 0 && status & O_NONBLOCK != 0 { _ = fcntl(fd, F_SETFL, status & ~O_NONBLOCK) }
        return (fd, before)
    }

    /// The read file's node: its size, and whether it changed while it was read.
    private func finish(_ job: FileJob, node: Node, fd: Int32, before: stat) -> FileResult {
        var node = node
        node.size = node.extents.reduce(0) { $0 + UInt64($1.length) }
        hooks.afterRead?(job.path)
        var after = stat()
        if fstat(fd, &after) == 0,
            FS.nanos(after.st_mtim) != FS.nanos(before.st_mtim) || after.st_size != before.st_size
        {
            tally.record(job.path, "changed while it was being read; this copy may be inconsistent and it will be read again next time")
            node.mtimeNanos = 0  // forces a re-read next time
        }
        tally.count { $0.bytesTotal += Int64(node.size) }
        tally.progress.files.add(1, ordering: .relaxed)
        return .stored(node)
    }

    /// Reads the file's data regions (holes of sparse files are skipped via outpost_SEEK_DATA/outpost_SEEK_HOLE) and chunks them.
    private func readExtents(
        fd: Int32, st: stat, buffer: UnsafeMutableRawBufferPointer,
        uploads: inout ThrowingTaskGroup<Void, any Error>
    ) async throws -> [Extent] {
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
                if errno == ENXIO { break }  // no more data: the rest is a hole
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

    /// Reads `start..<end` (to the end of the file when nil) buffer by buffer and cuts it into chunks. A
    /// buffer's upload runs in `uploads` while the next buffer is read, hashed and compressed.
    private func chunkRegion(
        fd: Int32, start: Int64, end: Int64?, buffer: UnsafeMutableRawBufferPointer, into extents: inout [Extent],
        uploads: inout ThrowingTaskGroup<Void, any Error>
    ) async throws {
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
                tally.progress.bytesRead.add(Int64(n), ordering: .relaxed)
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
            tally.count { $0.bytesRead += Int64(pos) }
            if pos < have { memmove(base, base + pos, have - pos) }
            have -= pos
            if eof && have == 0 { return }
        }
    }

    /// Hashes the chunks, lets the uploader claim the new ones, compresses those over the cores and hands them
    /// to the uploader (the compressed blobs no longer need the buffer).
    private func storeChunks(base: UnsafeRawPointer, cuts: [(Int, Int)], uploads: inout ThrowingTaskGroup<Void, any Error>) async throws -> [Extent] {
        let ids = cuts.map { BlobID.hash(UnsafeRawBufferPointer(start: base + $0.0, count: $0.1)) }
        let work = try await uploader.claim(ids, cuts: cuts)
        if !work.isEmpty {
            let blobs = await compress(work, base: UnsafeTransfer(base))
            try await uploader.upload(blobs, claimed: work.map(\.id), in: &uploads)
        }
        return zip(ids, cuts).map { .chunk($0, length: $1.1) }
    }

    /// Compresses the chunks in lanes, one per core (at most one per chunk), each with its own compressor.
    func compress(_ work: [BlobUploader.Work], base: UnsafeTransfer<UnsafeRawPointer>) async -> [PreparedBlob] {
        let lanes = min(work.count, max(1, ProcessInfo.processInfo.activeProcessorCount))
        if lanes == 1 {
            return compressors.with { c in
                work.map {
                    PreparedBlob.make(
                        id: $0.id, kind: .data, plaintext: UnsafeRawBufferPointer(start: base.value + $0.offset, count: $0.length), compressor: c)
                }
            }
        }
        return await withTaskGroup(of: [(Int, PreparedBlob)].self) { group in
            for lane in 0..<lanes {
                group.addTask {
                    compressors.with { c in
                        stride(from: lane, to: work.count, by: lanes).map { i in
                            let w = work[i]
                            return (
                                i,
                                PreparedBlob.make(
                                    id: w.id, kind: .data, plaintext: UnsafeRawBufferPointer(start: base.value + w.offset, count: w.length),
                                    compressor: c)
                            )
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
