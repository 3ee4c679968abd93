import OutpostCore

/// The store seen by the backup pipeline and the restorer of one machine (`outpost backup --store`).
public struct LocalRepository: BlobRepository {
    public let store: Store

    public init(store: Store) { self.store = store }

    public var chunkerParameters: ChunkerParameters { store.config.chunker }
    public var compressionLevel: Int32 { store.config.compressionLevel }

    public func missing(_ ids: [BlobID]) async throws -> Set<BlobID> { try store.missing(ids) }
    public func save(_ blobs: [PreparedBlob]) async throws -> SaveStats { try store.save(blobs) }
    public func load(_ id: BlobID, kind: BlobKind) async throws -> [UInt8] { try store.load(id) }
    public func loadMany(_ ids: [BlobID]) async throws -> [[UInt8]] { try store.loadMany(ids) }

    public func latestPoint(machine: String) async throws -> RecoveryPointInfo? {
        try store.index.points(machine: machine).max { $0.point.finishedAt < $1.point.finishedAt }
    }

    public func commit(_ point: RecoveryPoint) async throws -> RecoveryPointInfo { try store.commit(point) }
}
