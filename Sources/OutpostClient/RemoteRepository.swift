import Foundation
import Logging
import NIOHTTP1
import OutpostCore

/// The relay seen by the backup pipeline and the restorer: ids asked in batches, uploads in bounded batches,
/// blobs fetched as stored and verified here (decompress + SHA-256) before use.
public final class RemoteRepository: BlobRepository {
    public let client: RelayClient
    public let session: RelayAPI.Session
    private let decompressors = ResourcePool { ZstdDecompressor() }

    public init(client: RelayClient) async throws {
        self.client = client
        session = try await client.getJSON(RelayAPI.Session.self, "/v1/session")
        guard session.protocolVersion == WireFormat.protocolVersion else {
            throw ClientError(.remote, "the relay speaks protocol version \(session.protocolVersion), this client \(WireFormat.protocolVersion): upgrade the older side")
        }
    }

    public var chunkerParameters: ChunkerParameters { session.chunker }
    public var compressionLevel: Int32 { session.compressionLevel }
    public var machine: String { session.machine }

    public func missing(_ ids: [ChunkID]) async throws -> Set<ChunkID> {
        var out = Set<ChunkID>()
        var start = 0
        while start < ids.count {
            let slice = ids[start..<min(ids.count, start + WireFormat.maxIDsPerRequest)]
            let answer = try await client.call(.POST, "/v1/chunks/missing", body: WireFormat.encodeIDs(slice))
            out.formUnion(try WireFormat.decodeIDs(answer, max: WireFormat.maxIDsPerRequest))
            start += WireFormat.maxIDsPerRequest
        }
        return out
    }

    public func save(_ blobs: [PreparedBlob]) async throws -> SaveStats {
        var stats = SaveStats()
        var batch: [PreparedBlob] = []
        var bytes = 0
        func send() async throws {
            guard !batch.isEmpty else { return }
            let r = try await client.decodeJSON(RelayAPI.UploadResult.self, try await client.call(.POST, "/v1/chunks", body: WireFormat.encodeFrames(batch)))
            stats.blobs += r.stored
            stats.storedBytes += r.storedBytes
            stats.rawBytes += r.rawBytes
            batch.removeAll(keepingCapacity: true)
            bytes = 0
        }
        for b in blobs {
            if bytes + b.stored.count > WireFormat.maxUploadBytes || batch.count >= WireFormat.maxFetchBlobs { try await send() }
            batch.append(b)
            bytes += b.stored.count
        }
        try await send()
        return stats
    }

    public func load(_ id: ChunkID, kind: BlobKind) async throws -> [UInt8] {
        try await loadMany([id])[0]
    }

    /// Plaintexts of up to `WireFormat.maxFetchBlobs` blobs, in order, each verified against its id.
    public func loadMany(_ ids: [ChunkID]) async throws -> [[UInt8]] {
        let body = try await client.call(.POST, "/v1/blobs", body: WireFormat.encodeIDs(ids), maxResponse: 512 << 20)
        let frames = try WireFormat.decodeFrames(body)
        guard frames.map(\.id) == ids else {
            throw ClientError(.corrupt, "the relay answered a blob request with other blobs than asked for")
        }
        return try decompressors.with { d in
            try frames.map { f in
                do {
                    return try f.stored.withUnsafeBytes {
                        try PreparedBlob.open(stored: $0, id: f.id, compression: f.compression, rawLength: f.rawLength, decompressor: d,
                                              what: "blob \(f.id.shortHex) from the relay")
                    }
                } catch {
                    throw ClientError(.corrupt, "\(error); the relay's operator should run `outpost relay check --read-data`")
                }
            }
        }
    }

    public func points() async throws -> [RecoveryPointInfo] {
        let entries = try await client.getJSON([RelayAPI.PointEntry].self, "/v1/points")
        return entries.compactMap { e in ChunkID(hex: e.id).map { RecoveryPointInfo(id: $0, point: e.point) } }
    }

    public func latestPoint(machine: String) async throws -> RecoveryPointInfo? {
        try await points().max { $0.point.finishedAt < $1.point.finishedAt }
    }

    public func commit(_ point: RecoveryPoint) async throws -> RecoveryPointInfo {
        let e = try await client.postJSON(RelayAPI.PointEntry.self, "/v1/points", point)
        guard let id = ChunkID(hex: e.id) else { throw ClientError(.remote, "the relay answered a commit with an invalid id") }
        return RecoveryPointInfo(id: id, point: e.point)
    }
}
