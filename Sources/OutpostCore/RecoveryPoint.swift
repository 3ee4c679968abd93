import Foundation

/// Counters of one backup job, kept with its recovery point.
public struct BackupSummary: Codable, Sendable, Equatable {
    public var filesNew = 0
    public var filesChanged = 0
    public var filesUnchanged = 0
    public var directories = 0
    public var otherEntries = 0
    public var failedFiles = 0
    /// Bytes read from disk (unchanged files are not read).
    public var bytesRead: Int64 = 0
    /// Sum of the sizes of every file in the recovery point.
    public var bytesTotal: Int64 = 0
    /// Plaintext bytes of chunks the store did not have before.
    public var bytesAddedRaw: Int64 = 0
    /// What those chunks (and new trees) took in packs, after compression.
    public var bytesAddedStored: Int64 = 0
    public var chunksAdded = 0
    public var durationSeconds: Double = 0

    public init() {}
}

/// One backup of one protected machine's selection at one time.
///
/// Stored twice: as a row in the index (for listing) and as a `.point` blob in a pack (JSON, named by its
/// SHA-256), so that `rebuild-index` can recover the catalog from the packs alone. The id is that SHA-256.
public struct RecoveryPoint: Codable, Sendable, Equatable {
    public static let formatVersion = 1
    public var version: Int = RecoveryPoint.formatVersion
    public var machine: String
    public var hostname: String
    public var paths: [String]
    public var startedAt: Date
    public var finishedAt: Date
    /// Hex id of the root tree.
    public var rootTree: String
    /// Id of the recovery point this one was made incrementally against, if any.
    public var parent: String?
    public var summary: BackupSummary
    public var tags: [String] = []
    /// `backup --keep-until`: retention keeps the point on both tiers until this instant (the end of the day
    /// given). Optional and left out when unset, so records without it keep their bytes (and so their ids), and
    /// a reader that predates it ignores it, as it ignores any unknown key (docs/format.md §8).
    public var keepUntil: Date?

    public init(
        machine: String, hostname: String, paths: [String], startedAt: Date, finishedAt: Date,
        rootTree: BlobID, parent: String?, summary: BackupSummary, keepUntil: Date? = nil
    ) {
        self.keepUntil = keepUntil
        self.machine = machine
        self.hostname = hostname
        self.paths = paths
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.rootTree = rootTree.hex
        self.parent = parent
        self.summary = summary
    }

    public var root: BlobID? { BlobID(hex: rootTree) }

    public func encoded() -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        enc.dateEncodingStrategy = .iso8601WithFractions
        return Array(try! enc.encode(self))
    }

    public static func decode(_ bytes: [UInt8], what: String) throws -> RecoveryPoint {
        let dec = JSONDecoder()
        dec.dateDecodingStrategy = .iso8601WithFractions
        do {
            let p = try dec.decode(RecoveryPoint.self, from: Data(bytes))
            guard p.version <= formatVersion else {
                throw FormatError(
                    .unsupportedVersion, "\(what) has format version \(p.version); this outpost reads up to \(formatVersion): upgrade outpost")
            }
            return p
        } catch let e as FormatError {
            throw e
        } catch {
            throw FormatError(.invalidValue, "\(what) is not a valid recovery point record: \(error)")
        }
    }
}

extension JSONEncoder.DateEncodingStrategy {
    public static let iso8601WithFractions = JSONEncoder.DateEncodingStrategy.custom { date, encoder in
        var c = encoder.singleValueContainer()
        try c.encode(date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted)))
    }
}

extension JSONDecoder.DateDecodingStrategy {
    public static let iso8601WithFractions = JSONDecoder.DateDecodingStrategy.custom { decoder in
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        if let d = try? Date(s, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted)) {
            return d
        }
        if let d = try? Date(s, strategy: .iso8601) { return d }
        throw DecodingError.dataCorruptedError(in: c, debugDescription: "not an ISO 8601 date: \(s)")
    }
}

/// A recovery point as listed: its id and record.
public struct RecoveryPointInfo: Sendable, Equatable {
    public var id: BlobID
    public var point: RecoveryPoint
    public init(id: BlobID, point: RecoveryPoint) { self.id = id; self.point = point }
}

/// What the backup pipeline and the restorer need of a repository: the local store today, the relay over
/// HTTPS later. Blobs are addressed by SHA-256 of their plaintext; `save` may drop blobs the repository
/// already has.
public protocol BlobRepository: Sendable {
    var chunkerParameters: ChunkerParameters { get }
    var compressionLevel: Int32 { get }
    /// Of `ids`, those the repository does not have (from the asking machine's point of view).
    func missing(_ ids: [BlobID]) async throws -> Set<BlobID>
    /// Stores what it does not have yet; returns what was really added.
    func save(_ blobs: [PreparedBlob]) async throws -> SaveStats
    /// Plaintext of a blob, verified against its id.
    func load(_ id: BlobID, kind: BlobKind) async throws -> [UInt8]
    /// Plaintexts of several data blobs, in order (one round trip for a remote repository).
    func loadMany(_ ids: [BlobID]) async throws -> [[UInt8]]
    /// The machine's newest recovery point, the base for an incremental backup.
    func latestPoint(machine: String) async throws -> RecoveryPointInfo?
    /// Makes every saved blob durable and records the recovery point atomically.
    func commit(_ point: RecoveryPoint) async throws -> RecoveryPointInfo
}

extension BlobRepository {
    public func loadMany(_ ids: [BlobID]) async throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        out.reserveCapacity(ids.count)
        for id in ids { out.append(try await load(id, kind: .data)) }
        return out
    }
}

/// What a `save` really added (blobs the repository already had are not counted).
public struct SaveStats: Sendable, Equatable {
    public var blobs = 0
    public var rawBytes: Int64 = 0
    public var storedBytes: Int64 = 0
    public init(blobs: Int = 0, rawBytes: Int64 = 0, storedBytes: Int64 = 0) {
        self.blobs = blobs; self.rawBytes = rawBytes; self.storedBytes = storedBytes
    }
}
