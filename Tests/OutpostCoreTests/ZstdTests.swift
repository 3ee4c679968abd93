import OutpostCore
import Testing

/// Compressible but not trivial: text with a repeating vocabulary.
private func text(count: Int) -> [UInt8] {
    let words = ["outpost ", "backup ", "chunk ", "pack ", "tree ", "zstd ", "sha256 ", "restore\n"].map { Array($0.utf8) }
    var rng = SplitMix64(seed: 99)
    var out: [UInt8] = []
    while out.count < count { out += words[Int(rng.next() % UInt64(words.count))] }
    return Array(out.prefix(count))
}

private func make(_ plaintext: [UInt8], kind: BlobKind = .data, compressor: ZstdCompressor?) -> PreparedBlob {
    plaintext.withUnsafeBytes { PreparedBlob.make(kind: kind, plaintext: $0, compressor: compressor) }
}

private func open(_ blob: PreparedBlob, stored: [UInt8]? = nil, rawLength: Int? = nil, id: BlobID? = nil) throws -> [UInt8] {
    try (stored ?? blob.stored).withUnsafeBytes {
        try PreparedBlob.open(
            stored: $0, id: id ?? blob.id, compression: blob.compression,
            rawLength: rawLength ?? blob.rawLength, decompressor: ZstdDecompressor(), what: "blob")
    }
}

@Suite struct ZstdTests {
    @Test func compressDecompressRoundTrip() throws {
        let plain = text(count: 100_000)
        let packed = ZstdCompressor().compress(plain)
        #expect(packed.count < plain.count / 2)
        let back = try packed.withUnsafeBytes { try ZstdDecompressor().decompress($0, rawLength: plain.count, what: "test") }
        #expect(back == plain)
    }

    /// Found by the zstd fuzz target (Fuzz/crashes/zstd): a first check of an empty frame trapped on a nil scratch.
    @Test func checkingAnEmptyFrameFirstDoesNotTrap() throws {
        let empty = ZstdCompressor().compress([])
        let d = ZstdDecompressor()
        try empty.withUnsafeBytes { try d.checkFrame($0, rawLength: 0, what: "empty") }
        #expect(throws: FormatError.self) {
            try [UInt8](repeating: 7, count: 9).withUnsafeBytes { try ZstdDecompressor().checkFrame($0, rawLength: 0, what: "junk") }
        }
    }

    /// Found by the vaultpack fuzz target: a record claiming gigabytes for a small frame made decompress allocate them.
    @Test func aClaimBeyondTheFramesDeclaredSizeIsRefusedBeforeAllocating() throws {
        let frame = ZstdCompressor().compress(Array("ten bytes!".utf8))
        let d = ZstdDecompressor()
        let e = #expect(throws: FormatError.self) { try frame.withUnsafeBytes { _ = try d.decompress($0, rawLength: 3 << 30, what: "frame") } }
        #expect(e?.code == .compression)
        #expect(throws: FormatError.self) { try frame.withUnsafeBytes { try d.checkFrame($0, rawLength: 3 << 30, what: "frame") } }
        #expect(try frame.withUnsafeBytes { try d.decompress($0, rawLength: 10, what: "frame") } == Array("ten bytes!".utf8))
    }

    @Test func contextsAreReusable() throws {
        let compressor = ZstdCompressor(level: 19)
        let decompressor = ZstdDecompressor()
        #expect(compressor.level == 19)
        for count in [1, 1000, 50_000] {
            let plain = text(count: count)
            let packed = compressor.compress(plain)
            #expect(try packed.withUnsafeBytes { try decompressor.decompress($0, rawLength: count, what: "t") } == plain)
        }
    }

    @Test func compressIfSmallerKeepsRandomDataRaw() {
        let random = pseudoRandomBytes(count: 64 << 10, seed: 11)
        #expect(random.withUnsafeBytes { ZstdCompressor().compressIfSmaller($0) } == nil)
    }

    @Test func compressIfSmallerCompressesZeros() throws {
        let zeros = [UInt8](repeating: 0, count: 64 << 10)
        let packed = try #require(zeros.withUnsafeBytes { ZstdCompressor().compressIfSmaller($0) })
        #expect(packed.count < 1024)
        let back = try packed.withUnsafeBytes { try ZstdDecompressor().decompress($0, rawLength: zeros.count, what: "t") }
        #expect(back == zeros)
    }

    @Test func compressIfSmallerKeepsEmptyInputRaw() {
        #expect([UInt8]().withUnsafeBytes { ZstdCompressor().compressIfSmaller($0) } == nil)
    }

    @Test func decompressWithWrongRawLengthThrows() {
        let plain = text(count: 10_000)
        let packed = ZstdCompressor().compress(plain)
        for wrong in [plain.count - 1, plain.count + 1, 0] {
            expectFormatError(.compression) {
                _ = try packed.withUnsafeBytes { try ZstdDecompressor().decompress($0, rawLength: wrong, what: "t") }
            }
        }
    }

    @Test func garbageInputThrows() {
        let garbage = pseudoRandomBytes(count: 500, seed: 12)
        let error = expectFormatError(.compression) {
            _ = try garbage.withUnsafeBytes { try ZstdDecompressor().decompress($0, rawLength: 1000, what: "blob xyz") }
        }
        #expect(error?.message.contains("blob xyz") == true)
        expectFormatError(.compression) {
            _ = try [UInt8]().withUnsafeBytes { try ZstdDecompressor().decompress($0, rawLength: 10, what: "t") }
        }
    }

    @Test func preparedBlobCompressedRoundTrip() throws {
        let plain = text(count: 40_000)
        let blob = make(plain, kind: .tree, compressor: ZstdCompressor())
        #expect(blob.compression == .zstd)
        #expect(blob.kind == .tree)
        #expect(blob.id == BlobID.hash(plain))
        #expect(blob.rawLength == plain.count)
        #expect(blob.stored.count < plain.count - plain.count / 32)
        #expect(try open(blob) == plain)
    }

    @Test func preparedBlobRawRoundTrip() throws {
        let random = pseudoRandomBytes(count: 20_000, seed: 13)
        let blob = make(random, compressor: ZstdCompressor())
        #expect(blob.compression == .none)
        #expect(blob.stored == random)
        #expect(blob.id == BlobID.hash(random))
        #expect(try open(blob) == random)

        let uncompressed = make(text(count: 5000), compressor: nil)
        #expect(uncompressed.compression == .none)
        #expect(try open(uncompressed) == text(count: 5000))

        let empty = make([], compressor: ZstdCompressor())
        #expect(empty.compression == .none)
        #expect(try open(empty) == [])
    }

    @Test func openDetectsFlippedByteInCompressedBlob() {
        let blob = make(text(count: 40_000), compressor: ZstdCompressor())
        #expect(blob.compression == .zstd)
        for position in [blob.stored.count / 2, blob.stored.count - 1] {
            var damaged = blob.stored
            damaged[position] ^= 0x10
            let error = #expect(throws: FormatError.self) { _ = try open(blob, stored: damaged) }
            #expect(error?.code == .checksumMismatch || error?.code == .compression, "byte \(position): \(String(describing: error))")
        }
    }

    @Test func openDetectsFlippedByteInRawBlob() {
        let blob = make(pseudoRandomBytes(count: 1000, seed: 14), compressor: nil)
        var damaged = blob.stored
        damaged[500] ^= 0x01
        expectFormatError(.checksumMismatch) { _ = try open(blob, stored: damaged) }
    }

    @Test func openChecksTheIDAndTheRawLength() {
        let blob = make(text(count: 3000), compressor: nil)
        expectFormatError(.checksumMismatch) { _ = try open(blob, id: BlobID.hash([1])) }
        expectFormatError(.invalidValue) { _ = try open(blob, rawLength: 2999) }
        let packed = make(text(count: 3000), compressor: ZstdCompressor())
        expectFormatError(.compression) { _ = try open(packed, rawLength: 3001) }
    }

    /// The forwarder's damage check: zstd's own content checksum for our frames, SHA-256 for the rest.
    @Test func integrityCheckFindsAFlippedByteInCompressedAndRawBlobs() throws {
        let plain = (0..<300_000).map { UInt8(truncatingIfNeeded: ($0 / 7) &* 13) }
        let packed = plain.withUnsafeBytes { PreparedBlob.make(kind: .data, plaintext: $0, compressor: ZstdCompressor(level: 2)) }
        #expect(packed.compression == .zstd)
        let d = ZstdDecompressor()
        func check(_ b: PreparedBlob, _ stored: [UInt8]) throws {
            try stored.withUnsafeBytes {
                try PreparedBlob.checkIntegrity(
                    stored: $0, id: b.id, compression: b.compression, rawLength: b.rawLength, decompressor: d, what: "test blob")
            }
        }
        #expect(packed.stored.withUnsafeBytes { ZstdDecompressor.hasContentChecksum($0) })
        try check(packed, packed.stored)
        for at in [packed.stored.count / 2, packed.stored.count - 2] {
            var damaged = packed.stored
            damaged[at] ^= 0x10
            #expect(throws: FormatError.self) { try check(packed, damaged) }
        }
        let random = (0..<4096).map { _ in UInt8.random(in: 0...255) }
        let raw = random.withUnsafeBytes { PreparedBlob.make(kind: .data, plaintext: $0, compressor: ZstdCompressor(level: 2)) }
        #expect(raw.compression == .none)
        try check(raw, raw.stored)
        var flipped = raw.stored
        flipped[100] ^= 1
        #expect(throws: FormatError.self) { try check(raw, flipped) }
    }
}
