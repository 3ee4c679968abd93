import Foundation
import OutpostCore
import OutpostCrypto
import OutpostForwarder
import OutpostStore
import Testing

/// Vault objects version 2: packs of individually sealed blobs with a sealed index.
@Suite struct VaultPackTests {
    let sealer = ObjectSealer(master: MasterKey(exported: String(repeating: "5a", count: 32))!)

    func blobs() -> [PreparedBlob] {
        let c = ZstdCompressor(level: 3)
        return [
            Array(repeating: UInt8(7), count: 100_000), (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }, Array("tree".utf8),
        ]
        .enumerated().map { i, plain in
            plain.withUnsafeBytes { PreparedBlob.make(kind: i == 2 ? .tree : .data, plaintext: $0, compressor: c) }
        }
    }

    @Test func everyBlobComesBackFromItsRangeAndTheIndexListsThemAll() throws {
        let input = blobs()
        let key = VaultPack.key(for: input.map(\.id), salt: "", sealer: sealer)
        #expect(key.hasPrefix("k/" + key.dropFirst(5).prefix(2) + "/"))
        let (pack, placed) = try VaultPack.build(key: key, blobs: input, sealer: sealer)
        let index = try VaultPack.readIndex(pack: pack, key: key, sealer: sealer)
        #expect(index.map(\.id) == input.map(\.id))
        #expect(index.map(\.location) == placed.map(\.1))
        for (blob, entry) in zip(input, index) {
            let loc = entry.location
            let back = try VaultPack.openEntry(
                pack[loc.offset..<(loc.offset + loc.length)], key: key, id: blob.id, kind: loc.kind, sealer: sealer, decompressor: ZstdDecompressor())
            #expect(back.stored == blob.stored && back.kind == blob.kind && back.rawLength == blob.rawLength)
        }
        // The index can be found from the last 8 bytes and the size alone (what a rebuild reads).
        let range = try VaultPack.indexRange(trailer: Array(pack.suffix(8)), packSize: pack.count, key: key)
        #expect(try VaultPack.readIndex(sealed: Array(pack[range]), key: key, packSize: pack.count, sealer: sealer) == index)
    }

    @Test func theNameDependsOnTheBlobsAndTheSaltOnly() {
        let ids = blobs().map(\.id)
        #expect(VaultPack.key(for: ids, salt: "", sealer: sealer) == VaultPack.key(for: ids, salt: "", sealer: sealer))
        #expect(VaultPack.key(for: ids, salt: "", sealer: sealer) != VaultPack.key(for: ids, salt: "repair", sealer: sealer))
        #expect(VaultPack.key(for: ids, salt: "", sealer: sealer) != VaultPack.key(for: Array(ids.reversed()), salt: "", sealer: sealer))
        let other = ObjectSealer(master: MasterKey(exported: String(repeating: "a5", count: 32))!)
        #expect(VaultPack.key(for: ids, salt: "", sealer: sealer) != VaultPack.key(for: ids, salt: "", sealer: other))
    }

    @Test func aFlippedByteAMovedEntryOrACutPackIsCalledTampering() throws {
        let input = blobs()
        let key = VaultPack.key(for: input.map(\.id), salt: "", sealer: sealer)
        let (pack, placed) = try VaultPack.build(key: key, blobs: input, sealer: sealer)
        let first = placed[0].1
        var flipped = pack
        flipped[first.offset + 30] ^= 1
        let e1 = #expect(throws: ForwarderError.self) {
            try VaultPack.openEntry(
                flipped[first.offset..<(first.offset + first.length)], key: key, id: input[0].id, kind: first.kind, sealer: self.sealer,
                decompressor: ZstdDecompressor())
        }
        #expect(e1?.code == .tampered && e1?.message.contains(key) == true)
        // The same bytes claimed for another blob, or read as part of another pack, do not open.
        #expect(throws: ForwarderError.self) {
            try VaultPack.openEntry(
                pack[first.offset..<(first.offset + first.length)], key: key, id: input[1].id, kind: first.kind, sealer: self.sealer,
                decompressor: ZstdDecompressor())
        }
        #expect(throws: ForwarderError.self) {
            try VaultPack.openEntry(
                pack[first.offset..<(first.offset + first.length)], key: "k/00/other", id: input[0].id, kind: first.kind, sealer: self.sealer,
                decompressor: ZstdDecompressor())
        }
        // The same bytes under another kind do not open either (the kind is bound, not written in the pack).
        #expect(throws: ForwarderError.self) {
            try VaultPack.openEntry(
                pack[first.offset..<(first.offset + first.length)], key: key, id: input[0].id, kind: VaultPack.Kind.tree.rawValue,
                sealer: self.sealer, decompressor: ZstdDecompressor())
        }
        // Nothing in a pack marks where entries start: no sealed-object header inside it.
        let headers = (0..<(pack.count - 3)).filter { pack[$0] == 0x4f && Array(pack[$0..<($0 + 4)]) == ObjectSealer.magic }
        #expect(headers == [pack.count - 8 - Int(pack[pack.count - 8]) - Int(pack[pack.count - 7]) << 8], "only the index carries a header")
        let cut = Array(pack.dropLast(3))
        let e2 = #expect(throws: ForwarderError.self) { try VaultPack.readIndex(pack: cut, key: key, sealer: self.sealer) }
        #expect(e2?.code == .tampered)
        var badIndex = pack
        badIndex[pack.count - 20] ^= 0x40
        #expect(throws: ForwarderError.self) { try VaultPack.readIndex(pack: badIndex, key: key, sealer: self.sealer) }
    }
}
