import FuzzSupport
import OutpostCore

/// zstd frames as every reader of a blob gets them (relay upload, client fetch, store check, vault entries):
/// `ZstdDecompressor.decompress` and `checkFrame` with a claimed plaintext length, which must throw, never trap,
/// whatever the frame and the claim. A frame that decompresses must keep the claim and round-trip.
///
/// Input: u32 claimed raw length (little endian), then the frame. Claims are folded below 16 MiB (chunks are at
/// most 4 MiB): a larger claim only costs the allocation, and the callers' bounds on claims are fuzzed where the
/// claims are decoded (wire frames, pack trailers, vault entries).

nonisolated(unsafe) let decompressor = ZstdDecompressor()
nonisolated(unsafe) let compressor = ZstdCompressor(level: 1)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzZstd(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = Fuzz.bytes(data, size)
    guard input.count >= 4 else { return 0 }
    let claim = Int(UInt32(input[0]) | UInt32(input[1]) << 8 | UInt32(input[2]) << 16 | UInt32(input[3]) << 24)
    let rawLength = claim % (1 << 24 + 1)
    let frame = Array(input.dropFirst(4))
    frame.withUnsafeBytes { buf in
        _ = ZstdDecompressor.hasContentChecksum(buf)
        let checked = (try? decompressor.checkFrame(buf, rawLength: rawLength, what: "fuzzed frame")) != nil
        if let plain = try? decompressor.decompress(buf, rawLength: rawLength, what: "fuzzed frame") {
            Fuzz.expect(plain.count == rawLength, "decompress returned \(plain.count) bytes for a claim of \(rawLength)")
            Fuzz.expect(checked, "checkFrame rejects a frame decompress accepts")
            let again = compressor.compress(plain)
            let back = again.withUnsafeBytes { try? decompressor.decompress($0, rawLength: rawLength, what: "re-compressed frame") }
            Fuzz.expect(back == plain, "a decompressed frame does not round-trip through compress")
        }
    }
    return 0
}

@_cdecl("FuzzZstd_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    Fuzz.main(argc, argv, fuzzZstd)
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?)
    -> CInt
{
    Fuzz.writeSeedsIfAsked {
        func seed(_ plain: [UInt8]) -> [UInt8] {
            let n = UInt32(plain.count)
            return [UInt8(n & 0xff), UInt8(n >> 8 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 24)] + ZstdCompressor(level: 3).compress(plain)
        }
        return [
            ("zstd-text", seed(Fuzz.text(4000, seed: 5))),
            ("zstd-random", seed(Fuzz.pseudoRandom(300, seed: 6))),
            ("zstd-zeros", seed([UInt8](repeating: 0, count: 65536))),
            ("zstd-empty", seed([])),
        ]
    }
    return 0
}
