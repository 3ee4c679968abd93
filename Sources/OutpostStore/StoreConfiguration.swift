import Foundation
import OutpostCore

/// The store's `config` file (JSON). Read before anything else, so that a directory that is not a store, or a
/// store written by a newer outpost, is refused before it is touched.
public struct StoreConfiguration: Codable, Sendable, Equatable {
    public static let magic = "outpost-store"
    /// The on-disk layout version this code reads and writes. Never reuse a number.
    public static let currentVersion = 1

    public var format: String = StoreConfiguration.magic
    public var version: Int = StoreConfiguration.currentVersion
    public var id: String
    public var createdAt: Date
    public var chunker: ChunkerParameters
    public var compressionLevel: Int32
    /// A pack is sealed when it reaches this size (bytes).
    public var packTargetSize: Int

    public init(
        id: String, createdAt: Date, chunker: ChunkerParameters = .default, compressionLevel: Int32 = 3,
        packTargetSize: Int = 32 << 20
    ) {
        self.id = id
        self.createdAt = createdAt
        self.chunker = chunker
        self.compressionLevel = compressionLevel
        self.packTargetSize = packTargetSize
    }
}
