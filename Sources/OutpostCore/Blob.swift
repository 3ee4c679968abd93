/// What a blob in a pack holds. Stored as one byte in packs and the index: never renumber.
public enum BlobKind: UInt8, Sendable, Codable, CaseIterable {
    /// A content-defined piece of a file.
    case data = 0
    /// An encoded `Tree` (one directory's entries).
    case tree = 1
    /// A recovery point record (JSON), so that the catalog can be rebuilt from the packs alone.
    case point = 2
}

/// How a blob's bytes are stored in a pack. Stored as one byte: never renumber.
public enum BlobCompression: UInt8, Sendable, Codable {
    case none = 0
    case zstd = 1
}

/// A blob ready to be written: its id, its stored bytes (compressed or not) and its plaintext length.
public struct PreparedBlob: Sendable {
    public let id: BlobID
    public let kind: BlobKind
    public let compression: BlobCompression
    public let stored: [UInt8]
    public let rawLength: Int

    public init(id: BlobID, kind: BlobKind, compression: BlobCompression, stored: [UInt8], rawLength: Int) {
        self.id = id
        self.kind = kind
        self.compression = compression
        self.stored = stored
        self.rawLength = rawLength
    }

    /// Hashes and compresses `plaintext` (kept raw when compression does not pay).
    public static func make(kind: BlobKind, plaintext: UnsafeRawBufferPointer, compressor: ZstdCompressor?) -> PreparedBlob {
        let id = BlobID.hash(plaintext)
        return make(id: id, kind: kind, plaintext: plaintext, compressor: compressor)
    }

    public static func make(id: BlobID, kind: BlobKind, plaintext: UnsafeRawBufferPointer, compressor: ZstdCompressor?) -> PreparedBlob {
        if let compressor, let packed = compressor.compressIfSmaller(plaintext) {
            return PreparedBlob(id: id, kind: kind, compression: .zstd, stored: packed, rawLength: plaintext.count)
        }
        return PreparedBlob(id: id, kind: kind, compression: .none, stored: Array(plaintext), rawLength: plaintext.count)
    }

    /// Checks stored bytes for damage where they lie (the relay's store, before they go off-site): a zstd frame
    /// with a content checksum is verified by zstd itself (XXH64 of the content), which is as sure against
    /// damage as re-hashing and half the work; anything else is re-hashed as `open` does. Not a check against
    /// forgery: that is what the SHA-256 checks at upload and at restore are for.
    public static func checkIntegrity(
        stored: UnsafeRawBufferPointer, id: BlobID, compression: BlobCompression, rawLength: Int,
        decompressor: ZstdDecompressor, what: @autoclosure () -> String
    ) throws {
        if compression == .zstd && ZstdDecompressor.hasContentChecksum(stored) {
            try decompressor.checkFrame(stored, rawLength: rawLength, what: what())
        } else {
            _ = try open(stored: stored, id: id, compression: compression, rawLength: rawLength, decompressor: decompressor, what: what())
        }
    }

    /// Turns stored bytes back into plaintext and verifies the SHA-256 against `id`.
    public static func open(
        stored: UnsafeRawBufferPointer, id: BlobID, compression: BlobCompression, rawLength: Int,
        decompressor: ZstdDecompressor, what: @autoclosure () -> String
    ) throws -> [UInt8] {
        let plain: [UInt8]
        switch compression {
        case .none:
            guard stored.count == rawLength else {
                throw FormatError(.invalidValue, "\(what()) has \(stored.count) stored bytes, the index says \(rawLength)")
            }
            plain = Array(stored)
        case .zstd:
            plain = try decompressor.decompress(stored, rawLength: rawLength, what: what())
        }
        let actual = BlobID.hash(plain)
        guard actual == id else {
            throw FormatError(.checksumMismatch, "\(what()) is damaged: its content hashes to \(actual.shortHex), not \(id.shortHex)")
        }
        return plain
    }
}
