import COutpostSystem
import Foundation
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
    /// `backup --keep-until`: recorded in the point; retention keeps it on both tiers until then.
    public var keepUntil: Date?
    /// Fault injection for tests: runs before a file is opened, after it was read, and before a folder the scan
    /// found is opened to be listed (path as raw bytes).
    var hooks = Hooks()

    struct Hooks: Sendable {
        var beforeOpen: (@Sendable ([UInt8]) -> Void)?
        var afterRead: (@Sendable ([UInt8]) -> Void)?
        var beforeList: (@Sendable ([UInt8]) -> Void)?
    }

    public init(
        machine: String, paths: [String], exclusions: ExclusionList = ExclusionList([]),
        workers: Int = ProcessInfo.processInfo.activeProcessorCount + 1, hostname: String = ProcessInfo.processInfo.hostName
    ) {
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

/// The backup pipeline's coordinator. Its stages, each in its own file (after restic's archiver):
/// `Selection` (what to read), `Walker` (the depth-first walk, one folder descriptor per level, hard links),
/// `ChangeDetector` (what the parent point already holds), `FileChunker` (a bounded pool of workers: read →
/// FastCDC → SHA-256 → zstd), `BlobUploader` (what is new, the in-flight set, uploads overlapping reads) and
/// `TreeWriter` (one tree per folder, bottom-up). Memory is bounded: the walker may run at most `queueLimit`
/// files ahead of the workers and each worker owns one read buffer.
public final class Archiver: Sendable {
    let repository: any BlobRepository
    let options: BackupOptions
    let logger: Logger
    public let progress = BackupProgress()
    private let chunker: FastCDC
    private let compressors: ResourcePool<ZstdCompressor>
    static let queueLimit = 512

    public init(repository: any BlobRepository, options: BackupOptions, logger: Logger = Logger(label: "outpost.backup")) {
        self.repository = repository
        self.options = options
        self.logger = logger
        chunker = FastCDC(repository.chunkerParameters)
        let level = repository.compressionLevel
        compressors = ResourcePool { ZstdCompressor(level: level) }
    }

    public func run() async throws -> BackupResult {
        let started = Date()
        let selection = try Selection(paths: options.paths, exclusions: options.exclusions)
        let previous = try await repository.latestPoint(machine: options.machine)
        let tally = BackupTally(progress: progress, logger: logger)
        let detector = ChangeDetector(trees: TreeWalker(repository: repository))
        let previousRoot = await detector.previousTree(previous?.point.root)
        let rootFD = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if rootFD < 0 { throw ArchiveError.system(errno, "opening", "/") }
        let root = DirectoryHandle(fd: rootFD)
        let queue = FileQueue(limit: Self.queueLimit)
        let uploader = BlobUploader(repository: repository, tally: tally)
        let files = FileChunker(chunker: chunker, compressors: compressors, uploader: uploader, tally: tally, hooks: options.hooks)
        let trees = TreeWriter(repository: repository, compressors: compressors, tally: tally)
        let walker = Walker(selection: selection, detector: detector, queue: queue, trees: trees, tally: tally, hooks: options.hooks)
        let rootID: BlobID = try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<options.workers {
                group.addTask {
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: FileChunker.bufferSize, alignment: 64)
                    defer { buffer.deallocate() }
                    while let job = await queue.next() {
                        guard job.node.size <= FileChunker.batchFileSize else {
                            job.result.fulfil(await files.process(job, buffer: UnsafeTransfer(buffer)))
                            queue.done()
                            continue
                        }
                        // Small files waiting behind it join it, as many as fit in the buffer.
                        var room = FileChunker.bufferSize - Int(job.node.size)
                        let batch =
                            [job]
                            + queue.takeMore(max: FileChunker.batchFiles - 1) { next in
                                guard next.node.size <= FileChunker.batchFileSize, Int(next.node.size) < room else { return false }
                                room -= Int(next.node.size)
                                return true
                            }
                        let results =
                            batch.count == 1
                            ? [await files.process(job, buffer: UnsafeTransfer(buffer))]
                            : await files.processBatch(batch, buffer: UnsafeTransfer(buffer))
                        for (j, r) in zip(batch, results) { j.result.fulfil(r) }
                        queue.done(batch.count)
                    }
                }
            }
            do {
                let id = try await walker.walk(root: root, previous: previousRoot)
                queue.finish()
                try await group.waitForAll()
                return id
            } catch {
                // The workers fail what is still queued at once, so every folder's tree task ends.
                tally.stop(error)
                queue.finish()
                group.cancelAll()
                throw error
            }
        }
        // A failure recorded after the last file that could have reported it still stops the commit.
        if let e = tally.fatalError { throw e }
        var s = tally.counted
        s.durationSeconds = Date().timeIntervalSince(started)
        let failed = tally.failed
        s.failedFiles = failed.count
        let point = RecoveryPoint(
            machine: options.machine, hostname: options.hostname, paths: selection.paths,
            startedAt: started, finishedAt: Date(), rootTree: rootID, parent: previous?.id.hex, summary: s,
            keepUntil: options.keepUntil)
        let info = try await repository.commit(point)
        return BackupResult(point: info, failures: failed)
    }
}
