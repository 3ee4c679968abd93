import Foundation
import Logging
import NIOCore
import NIOHTTP1
import OutpostCore
import OutpostHTTP
import Synchronization

/// The relay seen by the backup pipeline and the restorer: ids asked in batches, uploads in bounded batches,
/// blobs fetched as stored and verified here (decompress + SHA-256) before use.
public final class RemoteRepository: BlobRepository {
    public let client: RelayClient
    public let session: RelayAPI.Session
    private let decompressors = ResourcePool { ZstdDecompressor() }
    /// Uploads of every file worker, coalesced: at most 4 requests in flight (the relay verifies 2 per core).
    private let uploads: RequestCoalescer<[PreparedBlob], SaveStats>
    /// Trees of every folder, coalesced apart from data chunks (their totals are counted apart): one in flight.
    private let treeUploads: RequestCoalescer<[PreparedBlob], SaveStats>
    /// "Which are missing?" questions of every file worker, coalesced: one in flight (fewer, larger requests cost
    /// the relay less CPU for the same time on the small-file corpus: 566 requests instead of 849).
    private let queries: RequestCoalescer<[BlobID], Set<BlobID>>
    /// The tier blob fetches read from (`restore --tier`); `auto` sends no header, so any relay takes it.
    public let tier: RelayAPI.FetchTier
    /// Stored bytes of the blobs fetched, and of those the ones the relay says it served from the vault: the
    /// restore's summary of bytes per tier.
    public let fetchedBytes = Atomic<Int64>(0)
    public let vaultBytes = Atomic<Int64>(0)
    /// The relay job this backup belongs to (0: none), named on the commit so that the relay attaches the point
    /// to it instead of recording a job of its own.
    public let job = Atomic<Int64>(0)

    public init(client: RelayClient, tier: RelayAPI.FetchTier = .auto) async throws {
        self.client = client
        self.tier = tier
        uploads = Self.uploadCoalescer(limit: 4, client: client)
        treeUploads = Self.uploadCoalescer(limit: 1, client: client)
        queries = RequestCoalescer(limit: 1, maxWeight: WireFormat.maxIDsPerRequest) { parts in
            let answer = try await client.call(.POST, "/v1/chunks/missing", body: WireFormat.encodeIDs(parts.joined()))
            let missing = Set(try WireFormat.decodeIDs(answer, max: WireFormat.maxIDsPerRequest))
            return parts.map { Set($0.filter { missing.contains($0) }) }
        }
        session = try await client.getJSON(RelayAPI.Session.self, "/v1/session")
        guard session.protocolVersion == WireFormat.protocolVersion else {
            throw ClientError(
                .remote,
                "the relay speaks protocol version \(session.protocolVersion), this client \(WireFormat.protocolVersion): upgrade the older side")
        }
    }

    public var chunkerParameters: ChunkerParameters { session.chunker }
    public var compressionLevel: Int32 { session.compressionLevel }
    public var machine: String { session.machine }

    public func missing(_ ids: [BlobID]) async throws -> Set<BlobID> {
        var out = Set<BlobID>()
        var start = 0
        while start < ids.count {
            let slice = Array(ids[start..<min(ids.count, start + WireFormat.maxIDsPerRequest)])
            out.formUnion(try await queries.submit(slice, weight: slice.count))
            start += WireFormat.maxIDsPerRequest
        }
        return out
    }

    /// Sends the blobs in parts below the upload limit; other workers' parts of data chunks may share their
    /// requests (the relay answers a request's totals, which go to its first part: the backup only sums them).
    /// Trees share requests only with trees, so their totals never mix with data chunks' in the recovery point's
    /// summary.
    public func save(_ blobs: [PreparedBlob]) async throws -> SaveStats {
        let coalescer = blobs.allSatisfy { $0.kind == .data } ? uploads : blobs.allSatisfy { $0.kind == .tree } ? treeUploads : nil
        var stats = SaveStats()
        var part: [PreparedBlob] = []
        var weight = 0
        func send() async throws {
            guard !part.isEmpty else { return }
            let r: SaveStats
            if let coalescer { r = try await coalescer.submit(part, weight: weight) } else { r = try await Self.upload(part, with: client) }
            stats.blobs += r.blobs
            stats.storedBytes += r.storedBytes
            stats.rawBytes += r.rawBytes
            part.removeAll(keepingCapacity: true)
            weight = 0
        }
        for b in blobs {
            // Below both limits of a request: stored bytes, and what its frames expand to (the relay refuses more).
            let w = WireFormat.uploadWeight(storedCount: b.stored.count, rawLength: b.rawLength)
            if weight + w > WireFormat.maxUploadBytes { try await send() }
            part.append(b)
            weight += w
        }
        try await send()
        return stats
    }

    /// Uploads of several callers in one request each. The relay answers for the request as a whole: the first
    /// part carries the totals, the others zero (callers only sum them).
    private static func uploadCoalescer(limit: Int, client: RelayClient) -> RequestCoalescer<[PreparedBlob], SaveStats> {
        RequestCoalescer(limit: limit, maxWeight: WireFormat.maxUploadBytes) { parts in
            var answers = [SaveStats](repeating: SaveStats(), count: parts.count)
            answers[0] = try await upload(Array(parts.joined()), with: client)
            return answers
        }
    }

    /// One `POST /v1/chunks` request with these frames.
    private static func upload(_ blobs: [PreparedBlob], with client: RelayClient) async throws -> SaveStats {
        let r = try await client.decodeJSON(
            RelayAPI.UploadResult.self,
            try await client.call(.POST, "/v1/chunks", bodyBuffer: ByteBuffer(frames: blobs)))
        return SaveStats(blobs: r.stored, rawBytes: r.rawBytes, storedBytes: r.storedBytes)
    }

    public func load(_ id: BlobID, kind: BlobKind) async throws -> [UInt8] {
        try await loadMany([id])[0]
    }

    /// Plaintexts of up to `WireFormat.maxFetchBlobs` blobs, in order, each verified against its id.
    /// The relay may answer a prefix of the list (its answers hold at most `WireFormat.maxFetchAnswerBytes`);
    /// the rest is asked for again.
    public func loadMany(_ ids: [BlobID]) async throws -> [[UInt8]] {
        var frames: [PreparedBlob] = []
        frames.reserveCapacity(ids.count)
        let headers = tier == .auto ? [] : [(RelayAPI.tierHeader, tier.rawValue)]
        while frames.count < ids.count {
            let rest = Array(ids[frames.count...])
            let (body, answerHeaders) = try await client.callForAnswer(
                .POST, "/v1/blobs", body: WireFormat.encodeIDs(rest), headers: headers,
                maxResponse: WireFormat.maxFetchAnswerBytes + WireFormat.maxRawLength + (64 << 10))
            let answer = try body.withUnsafeReadableBytes { try WireFormat.decodeFrames($0) }
            guard !answer.isEmpty, answer.count <= rest.count, zip(answer, rest).allSatisfy({ $0.id == $1 }) else {
                throw ClientError(.corrupt, "the relay answered a blob request with other blobs than asked for")
            }
            // A relay before tiered restore ignores the tier asked for and says nothing of the vault: refused
            // rather than reported as if the tier had been honoured.
            let fromVault = answerHeaders.first(name: RelayAPI.vaultBytesHeader).flatMap { Int64($0) }
            if fromVault == nil && tier != .auto {
                throw ClientError(
                    .remote,
                    "the relay at \(client.base) does not read from a chosen tier (its answer has no \(RelayAPI.vaultBytesHeader) header): upgrade the relay, or restore with --tier auto"
                )
            }
            fetchedBytes.add(answer.reduce(0) { $0 + Int64($1.stored.count) }, ordering: .relaxed)
            vaultBytes.add(fromVault ?? 0, ordering: .relaxed)
            frames += answer
        }
        return try decompressors.with { d in
            try frames.map { f in
                do {
                    return try f.stored.withUnsafeBytes {
                        try PreparedBlob.open(
                            stored: $0, id: f.id, compression: f.compression, rawLength: f.rawLength, decompressor: d,
                            what: "blob \(f.id.shortHex) from the relay")
                    }
                } catch {
                    throw ClientError(.corrupt, "\(error); the relay's operator should run `outpost relay check --read-data`")
                }
            }
        }
    }

    /// Every point the relay lists, with where it is (nil from a relay before tiered restore: on the relay).
    public func listedPoints() async throws -> [(info: RecoveryPointInfo, tier: RelayAPI.PointTier?)] {
        let entries = try await client.getJSON([RelayAPI.PointEntry].self, "/v1/points")
        return entries.compactMap { e in BlobID(hex: e.id).map { (info: RecoveryPointInfo(id: $0, point: e.point), tier: e.tier) } }
    }

    /// The points whose data the relay serves: those only in the vault are left out (a backup never builds on
    /// one, and `find` cannot read them through the relay yet).
    public func points() async throws -> [RecoveryPointInfo] {
        try await listedPoints().filter { $0.tier?.onRelay ?? true }.map { $0.info }
    }

    public func latestPoint(machine: String) async throws -> RecoveryPointInfo? {
        try await points().max { $0.point.finishedAt < $1.point.finishedAt }
    }

    public func commit(_ point: RecoveryPoint) async throws -> RecoveryPointInfo {
        let job = self.job.load(ordering: .relaxed)
        let body = Array(try RelayAPI.encoder().encode(point))
        let answer = try await client.callForAnswer(
            .POST, "/v1/points", body: body, contentType: "application/json", headers: job == 0 ? [] : [(AgentAPI.jobHeader, String(job))])
        let e = try client.decodeJSON(RelayAPI.PointEntry.self, Array(buffer: answer.body))
        guard let id = BlobID(hex: e.id) else { throw ClientError(.remote, "the relay answered a commit with an invalid id") }
        return RecoveryPointInfo(id: id, point: e.point)
    }
}
