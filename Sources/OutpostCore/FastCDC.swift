/// Chunker parameters. They are part of the store's identity: recorded in the store's config, and a
/// store is always chunked with the parameters it was created with (otherwise dedup would silently stop).
public struct ChunkerParameters: Codable, Sendable, Equatable {
    public var minSize: Int
    public var averageSize: Int
    public var maxSize: Int
    /// Seed of the gear table; part of the format (docs/format.md).
    public var gearSeed: UInt64

    public static let `default` = ChunkerParameters(
        minSize: 256 << 10, averageSize: 1 << 20, maxSize: 4 << 20,
        gearSeed: 0x4f75_7470_6f73_7431)

    public init(minSize: Int, averageSize: Int, maxSize: Int, gearSeed: UInt64 = 0x4f75_7470_6f73_7431) {
        self.minSize = minSize
        self.averageSize = averageSize
        self.maxSize = maxSize
        self.gearSeed = gearSeed
    }

    public func validate() throws {
        guard minSize >= 64, minSize < averageSize, averageSize < maxSize, maxSize <= 64 << 20,
            averageSize.nonzeroBitCount == 1
        else {
            throw FormatError(
                .invalidValue,
                "chunker parameters min \(minSize) / avg \(averageSize) / max \(maxSize) are invalid: need 64 ≤ min < avg < max ≤ 64 MiB and avg a power of two"
            )
        }
    }
}

/// FastCDC content-defined chunking (Xia et al., 2016/2020): a gear rolling hash with normalized chunking
/// (a stricter mask before the average size, a looser one after it) and cut-point skipping below `minSize`.
///
/// Deterministic for given parameters; a pure function over a buffer, so the caller owns all I/O and buffering.
public struct FastCDC: Sendable {
    public let parameters: ChunkerParameters
    private let gear: [UInt64]
    private let maskS: UInt64
    private let maskL: UInt64

    public init(_ parameters: ChunkerParameters = .default) {
        self.parameters = parameters
        // splitmix64: a documented, reproducible table.
        var state = parameters.gearSeed
        var table = [UInt64]()
        table.reserveCapacity(256)
        for _ in 0..<256 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            table.append(z ^ (z >> 31))
        }
        gear = table
        let bits = parameters.averageSize.trailingZeroBitCount
        // Normalization level 2: two more mask bits before the average, two fewer after. The gear hash shifts
        // left, so its high bits carry the most recent 64 bytes: the masks take the top bits.
        maskS = ((1 << UInt64(bits + 2)) - 1) << UInt64(64 - bits - 2)
        maskL = ((1 << UInt64(bits - 2)) - 1) << UInt64(64 - bits + 2)
    }

    /// Length of the next chunk at the start of `buffer`. When `buffer` is shorter than `maxSize` it must hold
    /// the rest of the stream (end of file): then a short final chunk is returned.
    public func cut(_ buffer: UnsafeRawBufferPointer) -> Int {
        var n = buffer.count
        let minSize = parameters.minSize
        if n <= minSize { return n }
        if n > parameters.maxSize { n = parameters.maxSize }
        let normal = min(parameters.averageSize, n)
        let maskS = self.maskS, maskL = self.maskL
        return gear.withUnsafeBufferPointer { g -> Int in
            let bytes = buffer.bindMemory(to: UInt8.self)
            var fp: UInt64 = 0
            var i = minSize
            while i < normal {
                fp = (fp << 1) &+ g[Int(bytes[i])]
                if fp & maskS == 0 { return i + 1 }
                i += 1
            }
            while i < n {
                fp = (fp << 1) &+ g[Int(bytes[i])]
                if fp & maskL == 0 { return i + 1 }
                i += 1
            }
            return n
        }
    }

    /// All chunk boundaries of a complete in-memory stream (tests, small inputs).
    public func chunkLengths(of data: [UInt8]) -> [Int] {
        var out: [Int] = []
        data.withUnsafeBytes { all in
            var start = 0
            while start < all.count {
                let len = cut(UnsafeRawBufferPointer(rebasing: all[start..<min(all.count, start + parameters.maxSize)]))
                out.append(len)
                start += len
            }
        }
        return out
    }
}
