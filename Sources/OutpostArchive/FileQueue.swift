import OutpostCore

/// A file the walker hands to the workers: where it is, the node the scan made of it, and the future its
/// folder's tree waits on.
struct FileJob: Sendable {
    let path: [UInt8]
    /// The folder the scan found the file in; the file is opened relative to it.
    let directory: DirectoryHandle
    let node: Node
    let result: Future<FileResult>
}

enum FileResult: Sendable {
    /// The node with its content (extents), or the parent's node for an unchanged file.
    case stored(Node)
    /// Not backed up (recorded): it vanished, was replaced or could not be read.
    case skipped
    /// The backup must stop (an upload failed).
    case fatal(any Error)
}

/// The walker's hand-off to the workers. At most `limit` files wait to be read, so the walk never runs far
/// ahead of them and memory stays bounded.
final class FileQueue: Sendable {
    let jobs: AsyncStream<FileJob>
    private let input: AsyncStream<FileJob>.Continuation
    private let room: AsyncSemaphore

    init(limit: Int) {
        (jobs, input) = AsyncStream<FileJob>.makeStream()
        room = AsyncSemaphore(permits: limit)
    }

    /// Waits for room, then queues the job.
    func submit(_ job: FileJob) async {
        await room.acquire()
        input.yield(job)
    }

    /// A worker finished a job: room for one more.
    func done() { room.release() }

    /// No more jobs: the workers end when the queue is empty.
    func finish() { input.finish() }
}
