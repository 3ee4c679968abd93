import FuzzSupport
import OutpostCore
import OutpostCrypto
import OutpostForwarder
import OutpostStore

/// Vault packs (docs/vault.md §9.3) as the relay reads them back from the vault (verify, tier-2 restore, rebuild).
/// Everything inside a pack is authenticated, so random bytes never get past AES-GCM; the harness holds a fixed
/// test key and seals what the fuzzer writes, so that the parsers behind authentication are reached too. That is
/// the case of a vault whose key leaked, or of a bug in our own writer: the relay must still throw, not trap.
///
/// Input: one selector byte, then: selector % 3 == 0, a whole pack object (the pre-authentication parsing:
/// magic, trailer, index range); 1, the index plaintext, sealed into a pack whose entries area is the
/// selector's filler (then every entry the index names is opened as verify does); 2, one entry's plaintext
/// (u8 compression | u32 raw length | stored bytes), sealed as an entry of the blob its SHA-256 names, opened
/// as tier-2 restore does.

/// A fixed master key: a test key, never a real one.
let sealer = ObjectSealer(master: MasterKey(exported: String(repeating: "5a", count: 32))!)
let key = "k/ab/fuzz-pack"
nonisolated(unsafe) let decompressor = ZstdDecompressor()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVaultPack(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = Fuzz.bytes(data, size)
    guard let selector = input.first else { return 0 }
    let body = Array(input.dropFirst())
    switch selector % 3 {
    case 0:
        readWhole(body)
    case 1:
        // The entries area: filler whose length the selector picks, so that index offsets can land inside it.
        let filler = Fuzz.pseudoRandom(Int(selector / 3) * 16, seed: UInt64(selector))
        guard let sealedIndex = try? sealer.seal(body, name: key + "#index", kind: VaultPack.indexKind) else { return 0 }
        var pack = VaultPack.magic + filler + sealedIndex
        withUnsafeBytes(of: UInt32(sealedIndex.count).littleEndian) { pack.append(contentsOf: $0) }
        pack += VaultPack.magic
        readWhole(pack)
    default:
        guard body.count >= 1 else { return 0 }
        let kind = body[0] % 4
        let plain = Array(body.dropFirst())
        let id = BlobID.hash(plain.count > 5 ? Array(plain.dropFirst(5)) : [])
        guard let sealed = try? sealer.sealBare(plain, name: key + "#" + id.hex, kind: kind) else { return 0 }
        if let blob = try? VaultPack.openEntry(sealed, key: key, id: id, kind: kind, sealer: sealer, decompressor: decompressor) {
            Fuzz.expect(blob.id == id, "openEntry returned another blob than the one asked for")
        }
    }
    return 0
}

/// What verify and rebuild do with a pack read whole: the index, then each entry it names.
private func readWhole(_ pack: [UInt8]) {
    guard let index = try? VaultPack.readIndex(pack: pack, key: key, sealer: sealer) else { return }
    for e in index {
        let loc = e.location
        Fuzz.expect(
            loc.offset >= VaultPack.magic.count && loc.length > 0 && loc.offset <= pack.count && loc.length <= pack.count - loc.offset,
            "an accepted index points entry \(e.id.shortHex) at \(loc.offset)+\(loc.length), outside a pack of \(pack.count) bytes")
        _ = try? VaultPack.openEntry(
            pack[loc.offset..<(loc.offset + loc.length)], key: key, id: e.id, kind: loc.kind,
            sealer: sealer, decompressor: decompressor)
    }
}

@_cdecl("FuzzVaultPack_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    Fuzz.main(argc, argv, fuzzVaultPack)
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?)
    -> CInt
{
    Fuzz.writeSeedsIfAsked {
        let blobs = [
            Fuzz.blob(.data, Fuzz.text(1500, seed: 7)),
            Fuzz.blob(.data, Fuzz.pseudoRandom(64, seed: 8)),
            Fuzz.blob(.tree, Tree(nodes: [Node(name: Array("v".utf8), type: .file)]).encode()),
        ]
        let built = try VaultPack.build(key: key, blobs: blobs, sealer: sealer)
        // The index plaintext of a pack whose entries area is the filler of selector 1 + 3·k (k·16 bytes), with
        // entries pointing into it (they fail authentication, as a moved entry would).
        var index = BinaryWriter()
        index.u16(1); index.u32(2)
        for (i, b) in blobs.prefix(2).enumerated() { index.id(b.id); index.u8(1); index.u64(UInt64(4 + i * 32)); index.u32(32) }
        func entryPlain(_ b: PreparedBlob) -> [UInt8] {
            var w = BinaryWriter()
            w.u8(b.kind == .tree ? 2 : 1)
            w.u8(b.compression.rawValue); w.u32(UInt32(b.rawLength)); w.raw(b.stored)
            return w.bytes
        }
        return [
            ("pack-whole", [0] + built.bytes),
            ("index-2", [1 + 3 * 5] + index.bytes),
            ("index-empty", [1] + [1, 0, 0, 0, 0, 0]),
            ("entry-zstd", [2] + entryPlain(blobs[0])),
            ("entry-raw", [2] + entryPlain(blobs[1])),
            ("entry-tree", [2] + entryPlain(blobs[2])),
        ]
    }
    return 0
}
