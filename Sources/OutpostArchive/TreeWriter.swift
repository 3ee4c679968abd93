import OutpostCore

/// Saves a folder's tree: encodes it, compresses it, and sends it unless the repository has it already (an
/// unchanged folder encodes to the same tree, so it costs nothing in the next recovery point).
struct TreeWriter: Sendable {
    let repository: any BlobRepository
    let compressors: ResourcePool<ZstdCompressor>
    let tally: BackupTally

    /// `previous`: the folder's tree in the parent point. When the new tree is the same, so is its id, and the
    /// repository holds it (the parent point needs it): no question, no upload. (Should the parent point be
    /// pruned and its data collected meanwhile, the commit's check refuses the new point, and the next backup
    /// sends the tree again; nothing is ever committed with a missing tree.)
    func write(_ tree: Tree, previous: Tree? = nil) async throws -> BlobID {
        let bytes = tree.encode()
        if let previous, previous == tree { return bytes.withUnsafeBytes { BlobID.hash($0) } }
        let blob = compressors.with { c in bytes.withUnsafeBytes { PreparedBlob.make(kind: .tree, plaintext: $0, compressor: c) } }
        if try await !repository.missing([blob.id]).isEmpty {
            let stats = try await repository.save([blob])
            tally.count { $0.bytesAddedStored += stats.storedBytes }
        }
        return blob.id
    }
}
