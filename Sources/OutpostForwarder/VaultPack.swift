import Foundation
import OutpostCore
import OutpostCrypto
import OutpostStore

/// A vault pack (vault objects version 2, docs/vault.md §9.3): many blobs sealed one by one into one object, so
/// that the vault holds a few large objects instead of one per chunk (fewer requests, and neither object sizes
/// nor anything inside a pack trace chunk sizes, which could otherwise fingerprint known files).
///
///     "OPK2"                      magic
///     sealed entry × n            ObjectSealer.sealBare(u8 compression | u32 raw length | stored bytes,
///                                     name: "<pack key>#<blob id hex>", kind): nonce | ciphertext | tag, no header,
///                                     so nothing marks where an entry starts
///     sealed index                ObjectSealer.seal(index, name: "<pack key>#index", kind: 4)
///     u32 sealed index length     little endian
///     "OPK2"                      magic again, so that a cut-off object is recognised
///
/// Index plaintext: u16 version (1) | u32 count | per entry: blob id (32) | u8 kind | u64 offset | u32 length.
/// Each entry is authenticated against its pack and its blob id, so one entry can be read with a range request
/// and checked on its own (tier-2 restore), and an entry moved elsewhere fails to open.
public enum VaultPack {
    public static let magic: [UInt8] = Array("OPK2".utf8)
    public static let indexKind: UInt8 = 4
    static let trailerLength = 8

    /// The vault object kinds (the sealed entry's kind byte).
    public enum Kind: UInt8, Sendable { case data = 1, tree = 2, point = 3 }

    public static func kind(of blob: BlobKind) -> Kind {
        switch blob {
        case .tree: .tree;
        case .point: .point;
        case .data: .data
        }
    }

    public static func blobKind(_ raw: UInt8) -> BlobKind? {
        switch Kind(rawValue: raw) {
        case .data: .data;
        case .tree: .tree;
        case .point: .point;
        case nil: nil
        }
    }

    /// The pack's object key: keyed by the blobs it holds (so that a retry after a lost acknowledgement puts the
    /// same name and the vault keeps one copy) and by `salt` (so that a repair never collides with a damaged pack).
    public static func key(for ids: [BlobID], salt: String, sealer: ObjectSealer) -> String {
        var label = "pack:v2:" + salt + ":"
        label.reserveCapacity(label.count + ids.count * 64)
        for id in ids { label += id.hex }
        let name = sealer.objectName(label: label)
        return "k/" + name.prefix(2) + "/" + name
    }

    static func entryName(_ key: String, _ id: BlobID) -> String { key + "#" + id.hex }

    /// Seals `blobs` into one pack object; returns its bytes and where each blob landed.
    public static func build(key: String, blobs: [PreparedBlob], sealer: ObjectSealer) throws -> (
        bytes: [UInt8], locations: [(BlobID, VaultLocation)]
    ) {
        let estimate = blobs.reduce(64) { $0 + $1.stored.count + 64 } + blobs.count * 45
        var out: [UInt8] = []
        out.reserveCapacity(estimate)
        out += magic
        var index = BinaryWriter(capacity: 6 + blobs.count * 45)
        index.u16(1)
        index.u32(UInt32(blobs.count))
        var locations: [(BlobID, VaultLocation)] = []
        locations.reserveCapacity(blobs.count)
        var plain: [UInt8] = []
        for b in blobs {
            guard let rawLength = UInt32(exactly: b.rawLength) else {
                throw ForwarderError(
                    .tampered,
                    "blob \(b.id.shortHex) on the relay records a length of \(b.rawLength) bytes, which no blob has: run `outpost relay check`")
            }
            plain.removeAll(keepingCapacity: true)
            plain.reserveCapacity(b.stored.count + 5)
            plain.append(b.compression.rawValue)
            withUnsafeBytes(of: rawLength.littleEndian) { plain.append(contentsOf: $0) }
            plain += b.stored
            let kind = Self.kind(of: b.kind).rawValue
            let sealed = try sealer.sealBare(plain, name: entryName(key, b.id), kind: kind)
            let offset = out.count
            out += sealed
            index.id(b.id)
            index.u8(kind)
            index.u64(UInt64(offset))
            index.u32(UInt32(sealed.count))
            locations.append((b.id, VaultLocation(pack: key, offset: offset, length: sealed.count, kind: kind)))
        }
        let sealedIndex = try sealer.seal(index.bytes, name: key + "#index", kind: indexKind)
        out += sealedIndex
        withUnsafeBytes(of: UInt32(sealedIndex.count).littleEndian) { out.append(contentsOf: $0) }
        out += magic
        return (out, locations)
    }

    /// One entry of a pack index.
    public struct IndexEntry: Sendable, Equatable {
        public let id: BlobID
        public let kind: UInt8
        public let location: VaultLocation
    }

    /// The sealed index's byte range, from the pack's last 8 bytes and its size.
    public static func indexRange(trailer: [UInt8], packSize: Int, key: String) throws -> Range<Int> {
        guard trailer.count == trailerLength, Array(trailer[4...]) == magic else {
            throw ForwarderError(.tampered, "vault pack \(key) does not end as a pack does (cut off, damaged or tampered with)")
        }
        let length = Int(UInt32(trailer[0]) | UInt32(trailer[1]) << 8 | UInt32(trailer[2]) << 16 | UInt32(trailer[3]) << 24)
        // packSize comes from the vault's listing: checked before any arithmetic on it.
        guard packSize >= magic.count + trailerLength, length > 0, length <= packSize - trailerLength - magic.count else {
            throw ForwarderError(.tampered, "vault pack \(key) names an index that does not fit in it: damaged or tampered with")
        }
        return (packSize - trailerLength - length)..<(packSize - trailerLength)
    }

    /// The byte range of an entry at `loc`, or nil when the location cannot be one (negative, empty, past
    /// `packSize`, or overflowing): locations also come from the ledger, which a damaged disk can garble.
    public static func entryRange(_ loc: VaultLocation, packSize: Int = .max) -> Range<Int>? {
        guard loc.offset >= magic.count, loc.length > 0, loc.offset <= packSize, loc.length <= packSize - loc.offset else { return nil }
        return loc.offset..<(loc.offset + loc.length)
    }

    /// Opens and parses a pack's sealed index.
    public static func readIndex(sealed: [UInt8], key: String, packSize: Int, sealer: ObjectSealer) throws -> [IndexEntry] {
        let (kind, plain): (UInt8, [UInt8])
        do { (kind, plain) = try sealer.open(sealed, name: key + "#index") } catch {
            throw ForwarderError(.tampered, "the index of vault pack \(key) fails authentication: it was damaged or tampered with in the vault")
        }
        guard kind == indexKind else { throw ForwarderError(.tampered, "vault pack \(key) has no index where its trailer points") }
        var r = BinaryReader(plain, what: "the index of vault pack \(key)")
        guard try r.u16() == 1 else {
            throw ForwarderError(.tampered, "vault pack \(key) has an index version this relay does not know: upgrade Outpost")
        }
        let count = Int(try r.u32())
        guard count <= packSize / 33 else {
            throw ForwarderError(.tampered, "the index of vault pack \(key) lists more entries than the pack can hold")
        }
        var out: [IndexEntry] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            let id = try r.id()
            let k = try r.u8()
            // Compared before any conversion or sum: an offset beyond Int (or one that overflows with its length)
            // is damage, not a trap.
            let rawOffset = try r.u64()
            let length = Int(try r.u32())
            guard rawOffset >= UInt64(magic.count), rawOffset <= UInt64(max(0, packSize)), length > 0, length <= packSize - Int(rawOffset) else {
                throw ForwarderError(.tampered, "the index of vault pack \(key) points outside the pack")
            }
            out.append(IndexEntry(id: id, kind: k, location: VaultLocation(pack: key, offset: Int(rawOffset), length: length, kind: k)))
        }
        return out
    }

    /// Parses a whole pack's index (verify reads packs whole).
    public static func readIndex(pack: [UInt8], key: String, sealer: ObjectSealer) throws -> [IndexEntry] {
        guard pack.count >= magic.count + trailerLength, Array(pack[0..<4]) == magic else {
            throw ForwarderError(.tampered, "vault pack \(key) does not start as a pack does (damaged or tampered with)")
        }
        let range = try indexRange(trailer: Array(pack[(pack.count - trailerLength)...]), packSize: pack.count, key: key)
        return try readIndex(sealed: Array(pack[range]), key: key, packSize: pack.count, sealer: sealer)
    }

    /// Opens one sealed entry and checks it: authentic, for this blob and kind, and hashing to its id.
    public static func openEntry(
        _ sealed: some Collection<UInt8>, key: String, id: BlobID, kind: UInt8, sealer: ObjectSealer,
        decompressor: ZstdDecompressor
    ) throws -> PreparedBlob {
        let what = "blob \(id.shortHex) in vault pack \(key)"
        guard let blobKind = blobKind(kind) else { throw ForwarderError(.tampered, "\(what) has an unknown kind \(kind)") }
        let plain: [UInt8]
        do { plain = try sealer.openBare(Array(sealed), name: entryName(key, id), kind: kind) } catch {
            throw ForwarderError(.tampered, "\(what) fails authentication: it was damaged or tampered with in the vault")
        }
        var r = BinaryReader(plain, what: what)
        guard let compression = BlobCompression(rawValue: try r.u8()) else { throw ForwarderError(.tampered, "\(what) names an unknown compression") }
        let raw = Int(try r.u32())
        let stored = try r.raw(r.remaining)
        do {
            _ = try stored.withUnsafeBytes {
                try PreparedBlob.open(stored: $0, id: id, compression: compression, rawLength: raw, decompressor: decompressor, what: what)
            }
        } catch {
            throw ForwarderError(.tampered, "\(error)")
        }
        return PreparedBlob(id: id, kind: blobKind, compression: compression, stored: stored, rawLength: raw)
    }
}
