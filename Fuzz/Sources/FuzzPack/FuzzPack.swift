import FuzzSupport
import OutpostCore

@testable import OutpostStore

#if canImport(Glibc)
    import Glibc
#endif

/// Pack files as the store reads them from disk (docs/format.md, "Pack files"): the store's own `PackReader`
/// (header, footer, trailer entries; and the blob-header walk `rebuild-index` uses to salvage a pack whose trailer
/// is damaged), then every blob an accepted trailer points to, opened and checked as `check` and restore do.
///
/// The trailer's SHA-256 is not a MAC: whoever can write a pack can make it match. So when the selector's low bit
/// is set the harness writes the right digest into the footer first, and the fuzzer reaches the entry parsing
/// instead of stopping at the checksum.
///
/// Input: one selector byte, then the pack file.

nonisolated(unsafe) let decompressor = ZstdDecompressor()
let path: String = {
    let dir = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    return dir + "/outpost-fuzz-pack-\(getpid()).pack"
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPack(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = Fuzz.bytes(data, size)
    guard let selector = input.first else { return 0 }
    var pack = Array(input.dropFirst())
    if selector & 1 == 1 { forgeDigest(&pack) }
    do { try Fuzz.write(pack, to: path) } catch { fatalError("\(error)") }
    defer { unlink(path) }

    if let (entries, packSize) = try? PackReader.entries(path: path, name: "fuzz") {
        Fuzz.expect(packSize == pack.count, "PackReader reports a size of \(packSize) for a pack of \(pack.count) bytes")
        check(entries, in: pack, what: "trailer")
    }
    if let (entries, packSize) = try? PackReader.salvage(path: path, name: "fuzz") {
        Fuzz.expect(packSize == pack.count, "salvage reports a size of \(packSize) for a pack of \(pack.count) bytes")
        check(entries, in: pack, what: "salvage")
    }
    return 0
}

/// What an accepted entry promises: its bytes lie after the pack header and a blob header, inside the file.
private func check(_ entries: [PackEntry], in pack: [UInt8], what: String) {
    for e in entries {
        Fuzz.expect(
            e.offset >= PackFormat.headerSize + PackFormat.blobHeaderSize && e.storedLength >= 0
                && e.offset <= pack.count && e.storedLength <= pack.count - e.offset,
            "\(what) entry \(e.id.shortHex) at \(e.offset)+\(e.storedLength) lies outside a pack of \(pack.count) bytes")
        let stored = pack[e.offset..<(e.offset + e.storedLength)]
        stored.withUnsafeBytes { buf in
            try? PreparedBlob.checkIntegrity(
                stored: buf, id: e.id, compression: e.compression, rawLength: e.rawLength,
                decompressor: decompressor, what: "fuzzed pack blob")
            _ = try? PreparedBlob.open(
                stored: buf, id: e.id, compression: e.compression, rawLength: e.rawLength,
                decompressor: decompressor, what: "fuzzed pack blob")
        }
    }
}

/// Writes the SHA-256 of the trailer entries the footer claims into the footer, when the pack is long enough.
private func forgeDigest(_ pack: inout [UInt8]) {
    let footer = pack.count - PackFormat.footerSize
    guard footer >= PackFormat.headerSize else { return }
    let count = Int(pack[footer]) | Int(pack[footer + 1]) << 8 | Int(pack[footer + 2]) << 16 | Int(pack[footer + 3]) << 24
    let start = footer - count * PackFormat.entrySize
    guard start >= PackFormat.headerSize else { return }
    let digest = BlobID.hash(Array(pack[start..<footer])).bytes
    pack.replaceSubrange((footer + 8)..<(footer + 40), with: digest)
}

@_cdecl("FuzzPack_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    Fuzz.main(argc, argv, fuzzPack)
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?)
    -> CInt
{
    Fuzz.writeSeedsIfAsked {
        /// A pack as `PackWriter` writes it: header, blob headers and stored bytes, trailer and footer.
        func pack(_ blobs: [PreparedBlob]) -> [UInt8] {
            var out = PackFormat.header()
            var entries: [PackEntry] = []
            for b in blobs {
                out += PackFormat.blobHeader(b)
                entries.append(
                    PackEntry(
                        id: b.id, kind: b.kind, compression: b.compression, offset: out.count,
                        storedLength: b.stored.count, rawLength: b.rawLength))
                out += b.stored
            }
            return out + PackFormat.trailer(entries)
        }
        let blobs = [
            Fuzz.blob(.data, Fuzz.text(2000, seed: 3)),
            Fuzz.blob(.data, Fuzz.pseudoRandom(100, seed: 4)),
            Fuzz.blob(.tree, Tree(nodes: [Node(name: Array("f".utf8), type: .file)]).encode()),
        ]
        let full = pack(blobs)
        return [
            ("pack-3", [0] + full),
            ("pack-3-forge", [1] + full),
            ("pack-1", [1] + pack([blobs[1]])),
            ("pack-empty", [1] + pack([])),
            // A pack cut off before its trailer: what salvage is for.
            ("pack-cut", [0] + Array(full.prefix(full.count - 60))),
        ]
    }
    return 0
}
