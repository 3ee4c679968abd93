import OutpostCore

/// Saves a folder's tree: encodes it, compresses it, and sends it unless the repository has it already (an
/// unchanged folder encodes to the same tree, so it costs nothing in the next recovery point).
struct TreeWriter: Sendable {
    let repository: any BlobRepository
    let compressors: ResourcePool<ZstdCompressor>
    let tally: BackupTally

    func write(_ tree: Tree) async throws -> BlobID {
        let bytes = tree.encode()
        let blob = compressors.with { c in bytes.withUnsafeBytes { PreparedBlob.make(kind: .tree, plaintext: $0, compressor: c) } }
        if try await !repository.missing([blob.id]).isEmpty {
            let stats = try await repository.save([blob])
            tally.count { $0.bytesAddedStored += stats.storedBytes }
        }
        return blob.id
    }
}
