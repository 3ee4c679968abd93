import OutpostCore
import Testing

/// splitmix64: a tiny seeded generator so test inputs are the same on every run.
struct SplitMix64 {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// `count` pseudo-random bytes from `seed`.
func pseudoRandomBytes(count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        var i = 0
        while i < count {
            var word = rng.next()
            for _ in 0..<min(8, count - i) {
                buffer[i] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                i += 1
            }
        }
        initialized = count
    }
}

/// Expects `body` to throw a `FormatError` with `code`; returns the error for further checks.
@discardableResult
func expectFormatError(
    _ code: FormatError.Code, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> Void
) -> FormatError? {
    let error = #expect(throws: FormatError.self, sourceLocation: sourceLocation) { try body() }
    #expect(
        error?.code == code, "expected \(code), got \(String(describing: error?.code)): \(String(describing: error))",
        sourceLocation: sourceLocation)
    return error
}

extension BlobID {
    static let zero = BlobID(w0: 0, w1: 0, w2: 0, w3: 0)
}
