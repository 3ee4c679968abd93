import Foundation
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// Backs up a stream (standard input) as one file at the root of a recovery point (issue 12: `pg_dump … |
/// outpost backup --stdin --stdin-name db.sql`): cut with the repository's chunker as it arrives, each chunk
/// asked about and sent in batches, never held whole. It restores like any file (`outpost restore POINT
/// /db.sql --target DIR`).
public struct StreamArchiver: Sendable {
    let repository: any BlobRepository
    let machine: String
    let hostname: String
    /// The file's name in the point (one path component).
    let name: String
    let keepUntil: Date?

    public init(repository: any BlobRepository, machine: String, hostname: String, name: String, keepUntil: Date? = nil) {
        self.repository = repository
        self.machine = machine
        self.hostname = hostname
        self.name = name
        self.keepUntil = keepUntil
    }

    /// A name the stream can be stored under: one safe path component.
    public static func problem(_ name: String) -> String? {
        Node.isSafeName(Array(name.utf8)) ? nil : "--stdin-name \(Terminal.quoted(name)) must be a file name: not empty, not . or .., no / and no NUL"
    }

    /// Reads `fd` to its end and commits a point holding it as the file `name` (mode 0600, the time of the backup).
    public func run(fd: Int32 = 0) async throws -> BackupResult {
        if let problem = Self.problem(name) { throw ArchiveError(.usage, problem) }
        let started = Date()
        let chunker = FastCDC(repository.chunkerParameters)
        let compressor = ZstdCompressor(level: repository.compressionLevel)
        let maxChunk = chunker.parameters.maxSize
        // Room for a batch of chunks: cut while at least a maximum chunk is buffered (or the stream ended).
        let capacity = max(8 << 20, 2 * maxChunk)
        var buffer = [UInt8](repeating: 0, count: capacity)
        var filled = 0
        var ended = false
        var extents: [Extent] = []
        var summary = BackupSummary()
        while !ended || filled > 0 {
            while !ended && filled < capacity {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, capacity - filled) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ArchiveError.system(errno, "reading", "standard input")
                }
                if n == 0 { ended = true } else { filled += n }
            }
            // Cut every chunk the buffer holds whole; the tail waits for more input unless the stream ended.
            var cuts: [(Int, Int)] = []
            var pos = 0
            while pos < filled && (ended || filled - pos >= maxChunk) {
                let len = buffer.withUnsafeBytes { chunker.cut(UnsafeRawBufferPointer(rebasing: $0[pos..<filled])) }
                cuts.append((pos, len))
                pos += len
            }
            let ids = buffer.withUnsafeBytes { raw in cuts.map { BlobID.hash(UnsafeRawBufferPointer(rebasing: raw[$0.0..<$0.0 + $0.1])) } }
            let missing = try await repository.missing(ids)
            var blobs: [PreparedBlob] = []
            var sent = Set<BlobID>()
            for (id, (off, len)) in zip(ids, cuts) {
                extents.append(.chunk(id, length: len))
                summary.bytesRead += Int64(len)
                guard missing.contains(id), sent.insert(id).inserted else { continue }
                blobs.append(
                    buffer.withUnsafeBytes { raw in
                        PreparedBlob.make(
                            id: id, kind: .data, plaintext: UnsafeRawBufferPointer(rebasing: raw[off..<off + len]), compressor: compressor)
                    })
            }
            if !blobs.isEmpty {
                let stats = try await repository.save(blobs)
                summary.chunksAdded += stats.blobs
                summary.bytesAddedRaw += stats.rawBytes
                summary.bytesAddedStored += stats.storedBytes
            }
            // Keep the uncut tail at the front.
            if pos > 0 {
                buffer.withUnsafeMutableBytes { raw in
                    if filled > pos { raw.baseAddress!.copyMemory(from: raw.baseAddress! + pos, byteCount: filled - pos) }
                }
                filled -= pos
            }
        }
        let size = UInt64(summary.bytesRead)
        let now = Date()
        let node = Node(
            name: Array(name.utf8), type: .file, mode: 0o600, uid: getuid(), gid: getgid(),
            mtimeNanos: Int64(now.timeIntervalSince1970 * 1e9), ctimeNanos: Int64(now.timeIntervalSince1970 * 1e9), size: size, extents: extents)
        let tree = Tree(nodes: [node])
        let encoded = tree.encode()
        let treeBlob = encoded.withUnsafeBytes { PreparedBlob.make(kind: .tree, plaintext: $0, compressor: compressor) }
        if try await repository.missing([treeBlob.id]).contains(treeBlob.id) { _ = try await repository.save([treeBlob]) }
        summary.filesNew = 1
        summary.bytesTotal = Int64(size)
        summary.durationSeconds = now.timeIntervalSince(started)
        let point = RecoveryPoint(
            machine: machine, hostname: hostname, paths: ["stdin:" + name], startedAt: started, finishedAt: now, rootTree: treeBlob.id,
            parent: nil, summary: summary, keepUntil: keepUntil)
        return BackupResult(point: try await repository.commit(point), failures: [])
    }
}
