import OutpostCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A folder being restored, open until its content is complete: the walk of it holds one reference, and every
/// small file of it waiting in a `SmallFileQueue` batch holds one. The last release finishes the folder (its
/// owner, mode and times, then the descriptor is closed), so a folder's metadata is set after everything in it
/// was created, while the walk goes on without waiting for its files.
final class OpenFolder: Sendable {
    let fd: Int32
    /// Created by this restore: nothing can be in a file's way but what appears meanwhile.
    let isNew: Bool
    private struct State {
        var references = 1
        var applyMetadata = true
    }
    private let state = Mutex(State())
    /// Runs once, after the last release; false: the walk failed (no metadata, just close).
    private let finish: @Sendable (_ applyMetadata: Bool) -> Void

    init(fd: Int32, isNew: Bool, finish: @escaping @Sendable (_ applyMetadata: Bool) -> Void) {
        self.fd = fd
        self.isNew = isNew
        self.finish = finish
    }

    func retain() {
        state.withLock { $0.references += 1 }
    }

    /// Drops one reference; `failed`: the walk of the folder did not finish, so its metadata is not set.
    func release(failed: Bool = false) {
        let last = state.withLock { s -> Bool? in
            if failed { s.applyMetadata = false }
            s.references -= 1
            return s.references == 0 ? s.applyMetadata : nil
        }
        if let apply = last { finish(apply) }
    }
}

/// Small files of the whole restore, across folders, in batches whose chunks come in one repository request
/// (a folder of a few small files no longer costs a round trip of its own). Full batches go to the consumers
/// through `batches`; at most `capacity` wait or run at once, which also bounds the folders held open.
final class SmallFileQueue: Sendable {
    typealias Batch = [(Node, [[UInt8]], OpenFolder)]
    private let current = Mutex(SmallFileGroup())
    private let room: AsyncSemaphore
    let batches: AsyncStream<Batch>
    private let continuation: AsyncStream<Batch>.Continuation

    init(capacity: Int) {
        room = AsyncSemaphore(permits: max(1, capacity))
        (batches, continuation) = AsyncStream.makeStream(of: Batch.self)
    }

    /// Adds a file of `folder` (which it keeps open until the file is done); sends the batch it fills.
    func add(_ node: Node, _ components: [[UInt8]], in folder: OpenFolder) async {
        folder.retain()
        let full = current.withLock { group -> Batch? in
            var out: Batch?
            if group.isFull(adding: node) { out = group.take() }
            group.add(node, components, folder)
            return out
        }
        if let full { await send(full) }
    }

    /// Sends what is gathered (the walk is done) and ends the stream.
    func finish() async {
        let rest = current.withLock { $0.take() }
        if !rest.isEmpty { await send(rest) }
        continuation.finish()
    }

    /// A consumer is done with a batch.
    func done() { room.release() }

    private func send(_ batch: Batch) async {
        await room.acquire()
        continuation.yield(batch)
    }
}
