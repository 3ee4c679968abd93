import OutpostCore
import Synchronization

/// Sends the new chunks of the files being read. Two jobs:
/// - The in-flight set: chunks some worker is compressing or uploading right now. Files with the same content
///   are often read at the same time (copies side by side in a folder), and the repository answers "missing" to
///   both until one upload lands: the others skip such chunks instead of compressing and sending them again
///   (22 MB, 4 % of what a first backup of the benchmark corpus sent to a relay, were such duplicates).
/// - The upload overlap: a file's uploads run in a task group while its next buffer is read, hashed and
///   compressed, one upload at a time per file.
final class BlobUploader: Sendable {
    let repository: any BlobRepository
    let tally: BackupTally
    private let inFlight = Mutex(Set<BlobID>())

    init(repository: any BlobRepository, tally: BackupTally) {
        self.repository = repository
        self.tally = tally
    }

    /// A chunk to compress and send: its id, offset and length in the buffer.
    typealias Work = (id: BlobID, offset: Int, length: Int)

    /// Of the chunks cut from a buffer (`ids[i]` at `cuts[i]`), those to compress and send: the repository
    /// does not have them, they come first in the buffer, and no other worker is sending them. They are claimed
    /// (in flight) until their `upload` ends.
    func claim(_ ids: [BlobID], cuts: [(Int, Int)]) async throws -> [Work] {
        let missing = try await repository.missing(ids)
        var work: [Work] = []
        var queued = Set<BlobID>()
        for (i, id) in ids.enumerated() where missing.contains(id) && !queued.contains(id) {
            queued.insert(id)
            work.append((id, cuts[i].0, cuts[i].1))
        }
        return inFlight.withLock { busy in work.filter { busy.insert($0.id).inserted } }
    }

    /// Sends claimed chunks, compressed, in `uploads` once the file's previous upload has finished. If that one
    /// failed, its error is thrown and the claims are given up.
    func upload(_ blobs: [PreparedBlob], claimed: [BlobID], in uploads: inout ThrowingTaskGroup<Void, any Error>) async throws {
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
            self.tally.count {
                $0.bytesAddedRaw += stats.rawBytes
                $0.bytesAddedStored += stats.storedBytes
                $0.chunksAdded += stats.blobs
            }
        }
    }

    /// Reads one file with `body`, its uploads in a task group. If reading fails, uploads already started
    /// finish rather than be cancelled: other files may have skipped chunks they carry, so a failed upload is
    /// fatal to the backup.
    func withUploads<T: Sendable>(_ body: (inout ThrowingTaskGroup<Void, any Error>) async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self) { uploads in
            do {
                let value = try await body(&uploads)
                try await uploads.waitForAll()
                return value
            } catch {
                while !uploads.isEmpty {
                    do { try await uploads.next() } catch let failed { tally.stop(failed) }
                }
                throw error
            }
        }
    }

    /// Chunks in flight now (for tests).
    var claimedCount: Int { inFlight.withLock { $0.count } }
}
