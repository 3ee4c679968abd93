import Crypto

/// The name of a blob (a file chunk or a tree object): the SHA-256 of its plaintext.
///
/// Kept as four words rather than `[UInt8]` so that sets and dictionaries of millions of ids
/// hash and compare without heap traffic.
public struct BlobID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    public static let byteCount = 32

    public init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0; self.w1 = w1; self.w2 = w2; self.w3 = w3
    }

    /// Reads 32 bytes; returns nil when `bytes` has another length.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32 else { return nil }
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &words) { dst in
            // One copy when the bytes are contiguous (Data, arrays: every index read), else byte by byte.
            if bytes.withContiguousStorageIfAvailable({ dst.copyMemory(from: UnsafeRawBufferPointer($0)) }) == nil {
                for (i, b) in bytes.enumerated() { dst[i] = b }
            }
        }
        self.init(w0: words.0, w1: words.1, w2: words.2, w3: words.3)
    }

    public init(rawBuffer: UnsafeRawBufferPointer) {
        precondition(rawBuffer.count == 32)
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &words) { $0.copyMemory(from: rawBuffer) }
        self.init(w0: words.0, w1: words.1, w2: words.2, w3: words.3)
    }

    public init?(hex: String) {
        guard let bytes = Hex.decode(hex), bytes.count == 32 else { return nil }
        self.init(bytes: bytes)
    }

    /// SHA-256 of `buffer`.
    public static func hash(_ buffer: UnsafeRawBufferPointer) -> BlobID {
        let digest = SHA256.hash(data: buffer)
        return digest.withUnsafeBytes { BlobID(rawBuffer: $0) }
    }

    public static func hash(_ bytes: [UInt8]) -> BlobID {
        bytes.withUnsafeBytes { hash($0) }
    }

    public var bytes: [UInt8] {
        var words = (w0, w1, w2, w3)
        return Swift.withUnsafeBytes(of: &words) { Array($0) }
    }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var words = (w0, w1, w2, w3)
        return try Swift.withUnsafeBytes(of: &words) { try body($0) }
    }

    public var hex: String { Hex.encode(bytes) }
    public var shortHex: String { String(hex.prefix(8)) }
    public var description: String { hex }

    public static func < (lhs: BlobID, rhs: BlobID) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}

public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func decode(_ string: String) -> [UInt8]? {
        let utf8 = Array(string.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var i = 0
        while i < utf8.count {
            guard let hi = nibble(utf8[i]), let lo = nibble(utf8[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    public static func isHex(_ string: String) -> Bool {
        !string.isEmpty && string.utf8.allSatisfy { nibble($0) != nil }
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
