import OutpostCore
import Testing

/// Small parameters so that a debug build chunks megabytes quickly and still makes hundreds of chunks.
private let small = ChunkerParameters(minSize: 2048, averageSize: 8192, maxSize: 32768)

/// Chunk ids (SHA-256 of each chunk) in stream order.
private func chunkIDs(_ data: [UInt8], _ chunker: FastCDC) -> [BlobID] {
    var ids: [BlobID] = []
    var start = 0
    data.withUnsafeBytes { all in
        for length in chunker.chunkLengths(of: data) {
            ids.append(BlobID.hash(UnsafeRawBufferPointer(rebasing: all[start..<start + length])))
            start += length
        }
    }
    return ids
}

/// A direct transcription of docs/format.md section 3, independent of the implementation.
private enum ReferenceChunker {
    static func gear(seed: UInt64) -> [UInt64] {
        var state = seed
        var table: [UInt64] = []
        for _ in 0..<256 {
            state = state &+ 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            table.append(z ^ (z >> 31))
        }
        return table
    }

    static func masks(averageSize: Int) -> (s: UInt64, l: UInt64) {
        let bits = UInt64(averageSize.trailingZeroBitCount)
        return (((1 << (bits + 2)) - 1) << (64 - bits - 2), ((1 << (bits - 2)) - 1) << (64 - bits + 2))
    }

    static func lengths(of data: [UInt8], _ p: ChunkerParameters) -> [Int] {
        let gear = gear(seed: p.gearSeed)
        let (maskS, maskL) = masks(averageSize: p.averageSize)
        var out: [Int] = []
        var start = 0
        while start < data.count {
            var n = data.count - start
            var length = n
            if n > p.minSize {
                if n > p.maxSize { n = p.maxSize }
                let normal = min(p.averageSize, n)
                var fp: UInt64 = 0
                length = n
                var i = p.minSize
                while i < n {
                    fp = (fp << 1) &+ gear[Int(data[start + i])]
                    if fp & (i < normal ? maskS : maskL) == 0 { length = i + 1; break }
                    i += 1
                }
            }
            out.append(length)
            start += length
        }
        return out
    }
}

@Suite struct FastCDCTests {
    @Test func referenceGearMatchesDocumentedTestValues() {
        // Guards the reference itself, so the comparison below pins the documented format.
        let gear = ReferenceChunker.gear(seed: ChunkerParameters.default.gearSeed)
        #expect(gear[0] == 0x0e07_36b1_3708_2ece)
        #expect(gear[1] == 0x9844_0fdd_b35a_e909)
        #expect(gear[255] == 0x4abc_7f36_4fe5_4b7c)
        let masks = ReferenceChunker.masks(averageSize: ChunkerParameters.default.averageSize)
        #expect(masks.s == 0xffff_fc00_0000_0000)
        #expect(masks.l == 0xffff_c000_0000_0000)
    }

    @Test func matchesDocumentedAlgorithm() {
        let data = pseudoRandomBytes(count: 1 << 20, seed: 7)
        let lengths = FastCDC(small).chunkLengths(of: data)
        #expect(lengths.count > 50)
        #expect(lengths == ReferenceChunker.lengths(of: data, small))
    }

    @Test func isDeterministic() {
        let data = pseudoRandomBytes(count: 2 << 20, seed: 1)
        let first = FastCDC(small).chunkLengths(of: data)
        let second = FastCDC(small).chunkLengths(of: data)
        #expect(first.count > 50)
        #expect(first == second)
    }

    @Test func chunkSizesStayWithinBounds() throws {
        let data = pseudoRandomBytes(count: 2 << 20, seed: 2)
        let lengths = FastCDC(small).chunkLengths(of: data)
        let last = try #require(lengths.last)
        #expect(lengths.count > 50)
        for length in lengths.dropLast() {
            #expect(length > small.minSize && length <= small.maxSize, "chunk of \(length) bytes")
        }
        #expect(last > 0 && last <= small.maxSize)
        // Content-defined: cut points are neither all at the minimum nor all at the maximum.
        #expect(lengths.dropLast().contains { $0 < small.maxSize })
        #expect(Set(lengths).count > lengths.count / 2)
        let mean = data.count / lengths.count
        #expect(mean > small.minSize * 2 && mean < small.maxSize / 2, "mean chunk size \(mean)")
    }

    @Test func lengthsSumToInputLength() {
        for count in [1, 100, 2048, 2049, 32768, 32769, 1_000_003] {
            let data = pseudoRandomBytes(count: count, seed: UInt64(count))
            let lengths = FastCDC(small).chunkLengths(of: data)
            #expect(lengths.reduce(0, +) == count, "input of \(count) bytes")
            #expect(!lengths.contains(0))
        }
    }

    @Test func emptyInputHasNoChunks() {
        #expect(FastCDC(small).chunkLengths(of: []).isEmpty)
        #expect(FastCDC().chunkLengths(of: []).isEmpty)
    }

    @Test func shortInputIsOneChunk() {
        let data = pseudoRandomBytes(count: small.minSize, seed: 3)
        #expect(FastCDC(small).chunkLengths(of: data) == [small.minSize])
        data.withUnsafeBytes { buffer in
            #expect(FastCDC(small).cut(buffer) == small.minSize)
            #expect(FastCDC(small).cut(UnsafeRawBufferPointer(rebasing: buffer[0..<10])) == 10)
        }
    }

    @Test func cutNeverExceedsMaxSize() {
        // Zeros give a constant hash, the worst case for finding a cut point.
        let zeros = [UInt8](repeating: 0, count: 100_000)
        let lengths = FastCDC(small).chunkLengths(of: zeros)
        #expect(lengths.reduce(0, +) == zeros.count)
        #expect(lengths.allSatisfy { $0 <= small.maxSize })
    }

    @Test func shiftResistance() {
        let original = pseudoRandomBytes(count: 4 << 20, seed: 4)
        let shifted = pseudoRandomBytes(count: 100, seed: 5) + original
        let chunker = FastCDC(small)
        let before = chunkIDs(original, chunker)
        let after = Set(chunkIDs(shifted, chunker))
        #expect(before.count > 200)
        let reused = before.filter { after.contains($0) }.count
        #expect(Double(reused) >= 0.9 * Double(before.count), "\(reused) of \(before.count) chunks reused")
    }

    @Test func gearSeedChangesCutPoints() {
        let data = pseudoRandomBytes(count: 512 << 10, seed: 6)
        var other = small
        other.gearSeed = 42
        #expect(FastCDC(small).chunkLengths(of: data) != FastCDC(other).chunkLengths(of: data))
    }

    @Test func defaultParametersOnLargeInput() throws {
        let p = ChunkerParameters.default
        try p.validate()
        let data = pseudoRandomBytes(count: 24 << 20, seed: 8)
        let chunker = FastCDC()
        #expect(chunker.parameters == p)
        let lengths = chunker.chunkLengths(of: data)
        #expect(lengths.reduce(0, +) == data.count)
        #expect(lengths.count >= 6)
        for length in lengths.dropLast() {
            #expect(length > p.minSize && length <= p.maxSize, "chunk of \(length) bytes")
        }
        #expect(lengths.dropLast().contains { $0 < p.maxSize })
        #expect(lengths == chunker.chunkLengths(of: data))
    }

    @Test func validParametersAreAccepted() throws {
        try ChunkerParameters.default.validate()
        try small.validate()
        try ChunkerParameters(minSize: 64, averageSize: 128, maxSize: 129).validate()
        try ChunkerParameters(minSize: 1 << 20, averageSize: 1 << 24, maxSize: 64 << 20).validate()
    }

    @Test(arguments: [
        ChunkerParameters(minSize: 63, averageSize: 8192, maxSize: 32768),  // min below 64
        ChunkerParameters(minSize: 0, averageSize: 8192, maxSize: 32768),
        ChunkerParameters(minSize: 8192, averageSize: 8192, maxSize: 32768),  // min == avg
        ChunkerParameters(minSize: 16384, averageSize: 8192, maxSize: 32768),  // min > avg
        ChunkerParameters(minSize: 2048, averageSize: 32768, maxSize: 32768),  // avg == max
        ChunkerParameters(minSize: 2048, averageSize: 65536, maxSize: 32768),  // avg > max
        ChunkerParameters(minSize: 2048, averageSize: 12288, maxSize: 32768),  // avg not a power of two
        ChunkerParameters(minSize: 2048, averageSize: 8192, maxSize: (64 << 20) + 1),  // max above 64 MiB
    ])
    func invalidParametersAreRejected(_ p: ChunkerParameters) {
        expectFormatError(.invalidValue) { try p.validate() }
    }
}
