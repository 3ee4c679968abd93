/// Little-endian writer for the on-disk formats. All integers are fixed-width LE or unsigned LEB128.
public struct BinaryWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { appendLE(v) }
    public mutating func u32(_ v: UInt32) { appendLE(v) }
    public mutating func u64(_ v: UInt64) { appendLE(v) }
    public mutating func i64(_ v: Int64) { appendLE(UInt64(bitPattern: v)) }

    public mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func varint(_ value: Int) { varint(UInt64(value)) }

    /// Length-prefixed bytes.
    public mutating func data(_ d: some Collection<UInt8>) {
        varint(d.count)
        bytes.append(contentsOf: d)
    }

    public mutating func raw(_ d: some Sequence<UInt8>) { bytes.append(contentsOf: d) }

    public mutating func id(_ id: BlobID) { id.withUnsafeBytes { bytes.append(contentsOf: $0) } }

    private mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Bounds-checked reader: malformed input throws `FormatError.truncated`, it never traps.
public struct BinaryReader {
    public let bytes: [UInt8]
    public private(set) var offset: Int
    private let what: String

    public init(_ bytes: [UInt8], what: String, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
        self.what = what
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset >= bytes.count }

    private mutating func need(_ n: Int) throws {
        guard n >= 0, remaining >= n else {
            throw FormatError(.truncated, "\(what) is truncated at byte \(offset) (needs \(n) more bytes, has \(remaining))")
        }
    }

    public mutating func u8() throws -> UInt8 {
        try need(1)
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u16() throws -> UInt16 { try le(UInt16.self) }
    public mutating func u32() throws -> UInt32 { try le(UInt32.self) }
    public mutating func u64() throws -> UInt64 { try le(UInt64.self) }
    public mutating func i64() throws -> Int64 { Int64(bitPattern: try le(UInt64.self)) }

    private mutating func le<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let n = MemoryLayout<T>.size
        try need(n)
        var v: T = 0
        for i in 0..<n { v |= T(bytes[offset + i]) << (8 * i) }
        offset += n
        return v
    }

    public mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try u8()
            if shift == 63 && b > 1 { throw FormatError(.invalidValue, "\(what) holds a varint that overflows 64 bits at byte \(offset)") }
            result |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw FormatError(.invalidValue, "\(what) holds a varint that overflows 64 bits at byte \(offset)") }
        }
    }

    /// A varint that must fit `limit` (lengths, counts): guards allocations against hostile input.
    public mutating func count(max limit: Int) throws -> Int {
        let v = try varint()
        guard v <= UInt64(limit) else {
            throw FormatError(.invalidValue, "\(what) holds a count of \(v) at byte \(offset), above the limit \(limit)")
        }
        return Int(v)
    }

    public mutating func data(max limit: Int = 1 << 30) throws -> [UInt8] {
        let n = try count(max: min(limit, remaining))
        return try raw(n)
    }

    public mutating func raw(_ n: Int) throws -> [UInt8] {
        try need(n)
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    public mutating func id() throws -> BlobID {
        try need(32)
        defer { offset += 32 }
        return bytes.withUnsafeBytes { BlobID(rawBuffer: UnsafeRawBufferPointer(rebasing: $0[offset..<offset + 32])) }
    }
}
