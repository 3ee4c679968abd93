import OutpostCore
import Synchronization

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
/// ahead of them and memory stays bounded. A worker may take several waiting files at once (`takeMore`): small
/// files are read together, so that they share one "which are new?" question and one upload.
final class FileQueue: Sendable {
    private struct State {
        var jobs: [FileJob] = []
        var head = 0
        var waiters: [CheckedContinuation<FileJob?, Never>] = []
        var finished = false

        mutating func pop() -> FileJob? {
            guard head < jobs.count else { return nil }
            let job = jobs[head]
            head += 1
            if head > 256 && head * 2 > jobs.count { jobs.removeFirst(head); head = 0 }
            return job
        }
        var first: FileJob? { head < jobs.count ? jobs[head] : nil }
    }
    private let state = Mutex(State())
    private let room: AsyncSemaphore

    init(limit: Int) {
        room = AsyncSemaphore(permits: limit)
    }

    /// Waits for room, then queues the job (or hands it to a waiting worker).
    func submit(_ job: FileJob) async {
        await room.acquire()
        let waiter = state.withLock { s -> CheckedContinuation<FileJob?, Never>? in
            if !s.waiters.isEmpty { return s.waiters.removeFirst() }
            s.jobs.append(job)
            return nil
        }
        waiter?.resume(returning: job)
    }

    /// The next job; nil once the queue is finished and empty.
    func next() async -> FileJob? {
        await withCheckedContinuation { (c: CheckedContinuation<FileJob?, Never>) in
            let ready = state.withLock { s -> FileJob?? in
                if let job = s.pop() { return .some(job) }
                if s.finished { return .some(nil) }
                s.waiters.append(c)
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }

    /// Up to `max` more jobs that are waiting now, from the front, as long as `accept` takes them (it may keep
    /// state: a budget of bytes).
    func takeMore(max: Int, while accept: (FileJob) -> Bool) -> [FileJob] {
        state.withLock { s in
            var out: [FileJob] = []
            while out.count < max, let job = s.first, accept(job) {
                out.append(job)
                _ = s.pop()
            }
            return out
        }
    }

    /// Workers waiting in `next()` now (for tests).
    var waitingWorkers: Int { state.withLock { $0.waiters.count } }

    /// A worker finished `count` jobs: room for as many more.
    func done(_ count: Int = 1) {
        for _ in 0..<count { room.release() }
    }

    /// No more jobs: the workers end when the queue is empty.
    func finish() {
        let waiters = state.withLock { s -> [CheckedContinuation<FileJob?, Never>] in
            s.finished = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: nil) }
    }
}
