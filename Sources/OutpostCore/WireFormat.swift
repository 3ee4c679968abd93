/// The relay's wire protocol, version 1 (docs/protocol.md): ids and blob frames in binary bodies.
///
/// A list of ids is the ids' 32 bytes back to back. A blob frame is the pack blob header (44 bytes: u8 kind,
/// u8 compression, u16 0, u32 stored length, u32 raw length, 32-byte id) followed by the stored bytes.
public enum WireFormat {
    public static let protocolVersion = 1
    /// Ids per "which are missing?" request.
    public static let maxIDsPerRequest = 8192
    /// Bytes of one upload request body; the client batches below it.
    public static let maxUploadBytes = 16 << 20
    /// Plaintext bytes the frames of one upload may expand to together (a single frame may be larger: a tree).
    /// Clients weigh a blob by its stored size or a quarter of its raw size, whichever is larger.
    public static let maxUploadRawBytes = 4 * maxUploadBytes
    /// Blobs per fetch request.
    public static let maxFetchBlobs = 64
    /// Stored bytes of one fetch answer: the relay answers the longest prefix of the asked ids that fits (at
    /// least one blob), and the client asks again for the rest.
    public static let maxFetchAnswerBytes = 64 << 20

    /// What an upload request counts a blob as, so that a request stays below both limits.
    public static func uploadWeight(storedCount: Int, rawLength: Int) -> Int {
        max(storedCount + PackFormat.blobHeaderSize, (rawLength + 3) / 4)
    }
    /// Largest plaintext a frame may claim (chunks are at most 64 MiB; trees of huge folders can be large).
    public static let maxRawLength = 256 << 20

    public static func encodeIDs(_ ids: some Collection<BlobID>) -> [UInt8] {
        var w = BinaryWriter(capacity: ids.count * 32)
        for id in ids { w.id(id) }
        return w.bytes
    }

    public static func decodeIDs(_ bytes: [UInt8], max limit: Int) throws -> [BlobID] {
        guard bytes.count % 32 == 0 else {
            throw FormatError(.invalidValue, "an id list must be a multiple of 32 bytes long, this one is \(bytes.count)")
        }
        guard bytes.count / 32 <= limit else {
            throw FormatError(.invalidValue, "an id list holds \(bytes.count / 32) ids, more than the limit of \(limit)")
        }
        var r = BinaryReader(bytes, what: "id list")
        var out: [BlobID] = []
        out.reserveCapacity(bytes.count / 32)
        while !r.isAtEnd { out.append(try r.id()) }
        return out
    }

    public static func encodeFrames(_ blobs: [PreparedBlob]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(blobs.reduce(0) { $0 + PackFormat.blobHeaderSize + $1.stored.count })
        for b in blobs {
            out += PackFormat.blobHeader(b)
            out += b.stored
        }
        return out
    }

    /// Splits a body into frames without decompressing anything.
    public static func decodeFrames(_ bytes: [UInt8]) throws -> [PreparedBlob] {
        try bytes.withUnsafeBytes { try decodeFrames($0) }
    }

    /// The same from bytes in place (a request body as received): each frame's bytes are copied once.
    public static func decodeFrames(_ bytes: UnsafeRawBufferPointer) throws -> [PreparedBlob] {
        var out: [PreparedBlob] = []
        var offset = 0
        while offset < bytes.count {
            guard bytes.count - offset >= PackFormat.blobHeaderSize else {
                throw FormatError(.truncated, "blob frame at byte \(offset) is truncated (a header needs \(PackFormat.blobHeaderSize) bytes)")
            }
            let h = try PackFormat.decodeBlobHeader(Array(bytes[offset..<offset + PackFormat.blobHeaderSize]), pack: "upload", at: offset)
            let start = offset + PackFormat.blobHeaderSize
            guard h.stored <= bytes.count - start else {
                throw FormatError(.truncated, "blob frame \(h.4.shortHex) claims \(h.stored) bytes, the body holds \(bytes.count - start)")
            }
            guard h.raw <= maxRawLength else {
                throw FormatError(.invalidValue, "blob frame \(h.4.shortHex) claims \(h.raw) bytes of plaintext, above the limit \(maxRawLength)")
            }
            let stored = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<start + h.stored]))
            out.append(PreparedBlob(id: h.4, kind: h.0, compression: h.1, stored: stored, rawLength: h.raw))
            offset = start + h.stored
        }
        return out
    }
}
