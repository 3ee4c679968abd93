import Crypto

/// The pack file format, version 1 (docs/format.md, "Pack files").
///
/// ```
/// header   16 bytes  "OUTPACK\0" | u32 version | u32 flags (0)
/// blob     44 bytes  u8 kind | u8 compression | u16 0 | u32 stored length | u32 raw length | 32-byte id
///          then the stored bytes                                 (repeated for every blob)
/// trailer  52 bytes per blob: 32-byte id | u8 kind | u8 compression | u16 0 | u64 data offset | u32 stored | u32 raw
/// footer   48 bytes  u32 blob count | u32 0 | SHA-256 of the trailer entries | "OUTPEND\0"
/// ```
/// All integers little-endian. The magics and the version are never changed for version 1.
public enum PackFormat {
    public static let headerMagic: [UInt8] = Array("OUTPACK".utf8) + [0]
    public static let footerMagic: [UInt8] = Array("OUTPEND".utf8) + [0]
    public static let version: UInt32 = 1
    public static let headerSize = 16
    public static let blobHeaderSize = 44
    public static let entrySize = 52
    public static let footerSize = 48

    public static func header() -> [UInt8] {
        var w = BinaryWriter(capacity: headerSize)
        w.raw(headerMagic)
        w.u32(version)
        w.u32(0)
        return w.bytes
    }

    public static func checkHeader(_ bytes: [UInt8], pack: String) throws {
        var r = BinaryReader(bytes, what: "pack \(pack) header")
        let magic = try r.raw(8)
        guard magic == headerMagic else {
            throw FormatError(.badMagic, "pack \(pack) does not start with the pack magic: not an Outpost pack, or damaged")
        }
        let v = try r.u32()
        guard v == version else {
            throw FormatError(.unsupportedVersion, "pack \(pack) has format version \(v); this outpost reads version \(version): upgrade outpost")
        }
    }

    public static func blobHeader(_ blob: PreparedBlob) -> [UInt8] {
        var w = BinaryWriter(capacity: blobHeaderSize)
        w.u8(blob.kind.rawValue)
        w.u8(blob.compression.rawValue)
        w.u16(0)
        w.u32(UInt32(blob.stored.count))
        w.u32(UInt32(blob.rawLength))
        w.id(blob.id)
        return w.bytes
    }

    /// The most plaintext one blob of a pack may claim (the salvage walk and the trailer both refuse more).
    public static let maxRawLength = 1 << 30

    public static func decodeBlobHeader(_ bytes: [UInt8], pack: String, at offset: Int) throws -> (
        BlobKind, BlobCompression, stored: Int, raw: Int, BlobID
    ) {
        var r = BinaryReader(bytes, what: "blob header at \(offset) in pack \(pack)")
        guard let kind = BlobKind(rawValue: try r.u8()) else {
            throw FormatError(.invalidValue, "blob at \(offset) in pack \(pack) has an unknown kind")
        }
        guard let comp = BlobCompression(rawValue: try r.u8()) else {
            throw FormatError(.invalidValue, "blob at \(offset) in pack \(pack) has an unknown compression")
        }
        _ = try r.u16()
        let stored = Int(try r.u32())
        let raw = Int(try r.u32())
        return (kind, comp, stored, raw, try r.id())
    }

    /// Encodes trailer + footer for `entries`.
    public static func trailer(_ entries: [PackEntry]) -> [UInt8] {
        var w = BinaryWriter(capacity: entries.count * entrySize + footerSize)
        for e in entries {
            w.id(e.id)
            w.u8(e.kind.rawValue)
            w.u8(e.compression.rawValue)
            w.u16(0)
            w.u64(UInt64(e.offset))
            w.u32(UInt32(e.storedLength))
            w.u32(UInt32(e.rawLength))
        }
        let digest = Array(SHA256.hash(data: w.bytes))
        w.u32(UInt32(entries.count))
        w.u32(0)
        w.raw(digest)
        w.raw(footerMagic)
        return w.bytes
    }

    /// Reads the footer (the last `footerSize` bytes of a pack): the number of entries.
    public static func decodeFooter(_ bytes: [UInt8], pack: String) throws -> (count: Int, digest: [UInt8]) {
        var r = BinaryReader(bytes, what: "pack \(pack) footer")
        let count = Int(try r.u32())
        _ = try r.u32()
        let digest = try r.raw(32)
        guard try r.raw(8) == footerMagic else {
            throw FormatError(.badMagic, "pack \(pack) does not end with the pack footer: truncated or damaged")
        }
        return (count, digest)
    }

    public static func decodeEntries(_ bytes: [UInt8], count: Int, digest: [UInt8], pack: String, packSize: Int) throws -> [PackEntry] {
        guard Array(SHA256.hash(data: bytes)) == digest else {
            throw FormatError(.checksumMismatch, "pack \(pack) has a damaged trailer (its checksum does not match)")
        }
        var r = BinaryReader(bytes, what: "pack \(pack) trailer")
        var out: [PackEntry] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            let id = try r.id()
            guard let kind = BlobKind(rawValue: try r.u8()), let comp = BlobCompression(rawValue: try r.u8()) else {
                throw FormatError(.invalidValue, "pack \(pack) trailer holds an unknown blob kind or compression")
            }
            _ = try r.u16()
            let rawOffset = try r.u64()
            let stored = Int(try r.u32())
            let raw = Int(try r.u32())
            // Checked without overflow: a hostile trailer can carry any 64-bit value.
            guard rawOffset <= UInt64(packSize), stored <= packSize, Int(rawOffset) <= packSize - stored,
                Int(rawOffset) >= headerSize + blobHeaderSize
            else {
                throw FormatError(.invalidValue, "pack \(pack) trailer points blob \(id.shortHex) outside the pack")
            }
            // A reader allocates the plaintext: a trailer may not make it allocate gigabytes (Fuzz/crashes/pack).
            guard raw <= maxRawLength else {
                throw FormatError(
                    .invalidValue,
                    "pack \(pack) trailer claims \(raw) bytes of plaintext for blob \(id.shortHex), more than the \(maxRawLength) a blob may hold")
            }
            out.append(PackEntry(id: id, kind: kind, compression: comp, offset: Int(rawOffset), storedLength: stored, rawLength: raw))
        }
        return out
    }
}

/// Where one blob sits in a pack.
public struct PackEntry: Sendable, Equatable {
    public var id: BlobID
    public var kind: BlobKind
    public var compression: BlobCompression
    /// Offset of the stored bytes (after the blob header).
    public var offset: Int
    public var storedLength: Int
    public var rawLength: Int

    public init(id: BlobID, kind: BlobKind, compression: BlobCompression, offset: Int, storedLength: Int, rawLength: Int) {
        self.id = id; self.kind = kind; self.compression = compression
        self.offset = offset; self.storedLength = storedLength; self.rawLength = rawLength
    }
}
