import OutpostCore
import Testing

/// Three entries laid out as a writer would: header, then (blob header | stored bytes) per blob.
private func sampleEntries() -> (entries: [PackEntry], dataEnd: Int) {
    var offset = PackFormat.headerSize
    var entries: [PackEntry] = []
    let blobs: [(BlobKind, BlobCompression, Int, Int)] = [(.data, .zstd, 100, 400), (.tree, .none, 60, 60), (.point, .zstd, 1, 2)]
    for (i, (kind, compression, stored, raw)) in blobs.enumerated() {
        offset += PackFormat.blobHeaderSize
        entries.append(
            PackEntry(
                id: BlobID.hash([UInt8(i)]), kind: kind, compression: compression,
                offset: offset, storedLength: stored, rawLength: raw))
        offset += stored
    }
    return (entries, offset)
}

/// Splits a trailer into its entries and its footer.
private func split(_ trailer: [UInt8]) -> (entries: [UInt8], footer: [UInt8]) {
    (Array(trailer.dropLast(PackFormat.footerSize)), Array(trailer.suffix(PackFormat.footerSize)))
}

@Suite struct PackFormatTests {
    @Test func headerRoundTrip() throws {
        let header = PackFormat.header()
        #expect(header == [0x4f, 0x55, 0x54, 0x50, 0x41, 0x43, 0x4b, 0x00, 1, 0, 0, 0, 0, 0, 0, 0])
        #expect(header.count == PackFormat.headerSize)
        try PackFormat.checkHeader(header, pack: "p")
    }

    @Test func headerWithWrongMagicIsRejected() {
        var header = PackFormat.header()
        header[0] = 0x6f
        expectFormatError(.badMagic) { try PackFormat.checkHeader(header, pack: "p") }
        expectFormatError(.badMagic) { try PackFormat.checkHeader(PackFormat.footerMagic + [1, 0, 0, 0, 0, 0, 0, 0], pack: "p") }
    }

    @Test func headerWithVersion2IsRejected() {
        var header = PackFormat.header()
        header[8] = 2
        let error = expectFormatError(.unsupportedVersion) { try PackFormat.checkHeader(header, pack: "p") }
        #expect(error?.message.contains("upgrade outpost") == true)
    }

    @Test func truncatedHeaderIsRejected() {
        expectFormatError(.truncated) { try PackFormat.checkHeader(Array(PackFormat.header().prefix(10)), pack: "p") }
        expectFormatError(.truncated) { try PackFormat.checkHeader([], pack: "p") }
    }

    @Test func trailerRoundTrip() throws {
        let (entries, dataEnd) = sampleEntries()
        let trailer = PackFormat.trailer(entries)
        #expect(trailer.count == entries.count * PackFormat.entrySize + PackFormat.footerSize)
        #expect(Array(trailer.suffix(8)) == Array("OUTPEND".utf8) + [0])
        let (entryBytes, footerBytes) = split(trailer)
        let footer = try PackFormat.decodeFooter(footerBytes, pack: "p")
        #expect(footer.count == 3)
        #expect(footer.digest == BlobID.hash(entryBytes).bytes)
        let decoded = try PackFormat.decodeEntries(
            entryBytes, count: footer.count, digest: footer.digest, pack: "p",
            packSize: dataEnd + trailer.count)
        #expect(decoded == entries)
    }

    @Test func trailerEntryLayout() {
        let entry = PackEntry(
            id: BlobID.hash([9]), kind: .tree, compression: .zstd, offset: 0x0102_0304_0506,
            storedLength: 0x0a0b_0c0d, rawLength: 7)
        let bytes = Array(PackFormat.trailer([entry]).prefix(PackFormat.entrySize))
        #expect(Array(bytes.prefix(32)) == entry.id.bytes)
        #expect(Array(bytes[32..<52]) == [1, 1, 0, 0, 6, 5, 4, 3, 2, 1, 0, 0, 0x0d, 0x0c, 0x0b, 0x0a, 7, 0, 0, 0])
    }

    @Test func flippedTrailerByteIsDetected() throws {
        let (entries, dataEnd) = sampleEntries()
        let trailer = PackFormat.trailer(entries)
        let (entryBytes, footerBytes) = split(trailer)
        let footer = try PackFormat.decodeFooter(footerBytes, pack: "p")
        for position in [0, 40, entryBytes.count - 1] {
            var damaged = entryBytes
            damaged[position] ^= 0x01
            expectFormatError(.checksumMismatch) {
                _ = try PackFormat.decodeEntries(
                    damaged, count: footer.count, digest: footer.digest, pack: "p",
                    packSize: dataEnd + trailer.count)
            }
        }
    }

    @Test func footerWithWrongMagicIsRejected() {
        var footer = split(PackFormat.trailer(sampleEntries().entries)).footer
        footer[footer.count - 1] = 1
        expectFormatError(.badMagic) { _ = try PackFormat.decodeFooter(footer, pack: "p") }
        expectFormatError(.truncated) { _ = try PackFormat.decodeFooter(Array(footer.prefix(20)), pack: "p") }
    }

    @Test func entryOutsideThePackIsRejected() throws {
        func decode(offset: Int, stored: Int, packSize: Int) throws -> [PackEntry] {
            let entry = PackEntry(
                id: BlobID.hash([1]), kind: .data, compression: .none, offset: offset,
                storedLength: stored, rawLength: stored)
            let (entryBytes, footerBytes) = split(PackFormat.trailer([entry]))
            let footer = try PackFormat.decodeFooter(footerBytes, pack: "p")
            return try PackFormat.decodeEntries(entryBytes, count: footer.count, digest: footer.digest, pack: "p", packSize: packSize)
        }
        // Ends exactly at the pack size: fine.
        #expect(try decode(offset: 60, stored: 40, packSize: 100).first?.offset == 60)
        // One byte past the end.
        expectFormatError(.invalidValue) { _ = try decode(offset: 60, stored: 41, packSize: 100) }
        expectFormatError(.invalidValue) { _ = try decode(offset: 1000, stored: 0, packSize: 100) }
        // Inside the pack header, or before any blob header could end.
        expectFormatError(.invalidValue) { _ = try decode(offset: 0, stored: 10, packSize: 100) }
        expectFormatError(.invalidValue) { _ = try decode(offset: PackFormat.headerSize + PackFormat.blobHeaderSize - 1, stored: 10, packSize: 100) }
    }

    /// Found by the pack fuzz target (Fuzz/crashes/pack): a trailer claiming 4 GiB of plaintext for a small blob
    /// made a reader allocate it.
    @Test func aTrailerMayNotClaimGigabytesOfPlaintext() throws {
        let entry = PackEntry(id: BlobID.hash([1]), kind: .data, compression: .zstd, offset: 60, storedLength: 40, rawLength: Int(UInt32.max))
        let (entryBytes, footerBytes) = split(PackFormat.trailer([entry]))
        let footer = try PackFormat.decodeFooter(footerBytes, pack: "p")
        expectFormatError(.invalidValue) {
            _ = try PackFormat.decodeEntries(entryBytes, count: footer.count, digest: footer.digest, pack: "p", packSize: 100)
        }
    }

    @Test func blobHeaderRoundTrip() throws {
        let blob = PreparedBlob(
            id: BlobID.hash([1, 2, 3]), kind: .tree, compression: .zstd,
            stored: [UInt8](repeating: 7, count: 300), rawLength: 70_000)
        let header = PackFormat.blobHeader(blob)
        #expect(header.count == PackFormat.blobHeaderSize)
        #expect(Array(header.prefix(12)) == [1, 1, 0, 0, 0x2c, 0x01, 0, 0, 0x70, 0x11, 0x01, 0])
        let (kind, compression, stored, raw, id) = try PackFormat.decodeBlobHeader(header, pack: "p", at: 16)
        #expect(kind == .tree)
        #expect(compression == .zstd)
        #expect(stored == 300)
        #expect(raw == 70_000)
        #expect(id == blob.id)
    }

    @Test func blobHeaderWithUnknownKindOrCompressionIsRejected() {
        let blob = PreparedBlob(id: BlobID.hash([]), kind: .data, compression: .none, stored: [], rawLength: 0)
        var badKind = PackFormat.blobHeader(blob)
        badKind[0] = 3
        expectFormatError(.invalidValue) { _ = try PackFormat.decodeBlobHeader(badKind, pack: "p", at: 16) }
        var badCompression = PackFormat.blobHeader(blob)
        badCompression[1] = 2
        expectFormatError(.invalidValue) { _ = try PackFormat.decodeBlobHeader(badCompression, pack: "p", at: 16) }
        expectFormatError(.truncated) { _ = try PackFormat.decodeBlobHeader(Array(PackFormat.blobHeader(blob).prefix(43)), pack: "p", at: 16) }
    }
}
