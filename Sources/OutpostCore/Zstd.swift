import CZstd

/// A reusable zstd compression context. Not thread-safe: one per worker (see `ResourcePool`).
public final class ZstdCompressor {
    private let ctx: OpaquePointer
    public let level: Int32

    public init(level: Int32 = 3) {
        guard let c = ZSTD_createCCtx() else { fatalError("zstd: out of memory creating a compression context") }
        ctx = c
        self.level = level
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, level)
        // A frame checksum lets `check` find damage in a compressed blob before re-hashing it.
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_checksumFlag, 1)
    }

    deinit { ZSTD_freeCCtx(ctx) }

    /// Compresses `source`; returns nil when the result would not be at least 1/32 smaller (store it raw then).
    public func compressIfSmaller(_ source: UnsafeRawBufferPointer) -> [UInt8]? {
        let bound = ZSTD_compressBound(source.count)
        let limit = source.count - source.count / 32
        var failed = false
        let out = [UInt8](unsafeUninitializedCapacity: bound) { dst, count in
            let r = ZSTD_compress2(ctx, dst.baseAddress, bound, source.baseAddress, source.count)
            if ZSTD_isError(r) != 0 { failed = true; count = 0 } else { count = r }
        }
        if failed || out.count >= limit { return nil }
        return out
    }

    public func compress(_ source: [UInt8]) -> [UInt8] {
        source.withUnsafeBytes { src in
            let bound = ZSTD_compressBound(src.count)
            return [UInt8](unsafeUninitializedCapacity: bound) { dst, count in
                let r = ZSTD_compress2(ctx, dst.baseAddress, bound, src.baseAddress, src.count)
                precondition(ZSTD_isError(r) == 0, "zstd compression failed: \(String(cString: ZSTD_getErrorName(r)))")
                count = r
            }
        }
    }
}

/// A reusable zstd decompression context. Not thread-safe.
public final class ZstdDecompressor {
    private let ctx: OpaquePointer

    public init() {
        guard let c = ZSTD_createDCtx() else { fatalError("zstd: out of memory creating a decompression context") }
        ctx = c
    }

    /// Output space for `checkFrame`, kept between calls (one decompressor per worker).
    private var scratch: UnsafeMutableRawBufferPointer?

    deinit {
        ZSTD_freeDCtx(ctx)
        scratch?.deallocate()
    }

    /// A frame that declares another size than the plaintext length its record claims is refused before any
    /// buffer of that length is allocated (a record may claim gigabytes for a 10-byte frame: Fuzz/crashes/).
    static func checkDeclaredSize(_ source: UnsafeRawBufferPointer, rawLength: Int, what: @autoclosure () -> String) throws {
        guard rawLength >= 0 else { throw FormatError(.invalidValue, "\(what()) claims a negative length") }
        let declared = ZSTD_getFrameContentSize(source.baseAddress, source.count)
        if declared == UInt64.max - 1 {  // ZSTD_CONTENTSIZE_ERROR
            throw FormatError(.compression, "\(what()) is not a zstd frame")
        }
        if declared != UInt64.max && declared != UInt64(rawLength) {  // UInt64.max: ZSTD_CONTENTSIZE_UNKNOWN
            throw FormatError(.compression, "\(what()) declares \(declared) bytes of content, its record claims \(rawLength)")
        }
    }

    /// Whether a zstd frame carries a content checksum (RFC 8878 §3.1.1.1.1: bit 2 of the frame header
    /// descriptor, the byte after the 4-byte magic number).
    public static func hasContentChecksum(_ frame: UnsafeRawBufferPointer) -> Bool {
        guard frame.count >= 5, frame.loadUnaligned(as: UInt32.self).littleEndian == 0xFD2F_B528 else { return false }
        return frame[4] & 0x04 != 0
    }

    /// Decompresses into a reused buffer and discards the output, so that zstd verifies the frame's content
    /// checksum (XXH64) without an allocation per blob. Throws when the frame is damaged or expands to another
    /// length than `rawLength`.
    public func checkFrame(_ source: UnsafeRawBufferPointer, rawLength: Int, what: @autoclosure () -> String) throws {
        try Self.checkDeclaredSize(source, rawLength: rawLength, what: what())
        let space: UnsafeMutableRawBufferPointer
        if let s = scratch, s.count >= rawLength {
            space = s
        } else {
            scratch?.deallocate()
            space = UnsafeMutableRawBufferPointer.allocate(byteCount: max(rawLength, 1), alignment: 16)
            scratch = space
        }
        let r = ZSTD_decompressDCtx(ctx, space.baseAddress, rawLength, source.baseAddress, source.count)
        if ZSTD_isError(r) != 0 {
            throw FormatError(.compression, "\(what()) does not decompress: \(String(cString: ZSTD_getErrorName(r)))")
        }
        if r != rawLength { throw FormatError(.compression, "\(what()) expanded to \(r) bytes, expected \(rawLength)") }
    }

    /// Decompresses a frame that must expand to exactly `rawLength` bytes.
    public func decompress(_ source: UnsafeRawBufferPointer, rawLength: Int, what: @autoclosure () -> String) throws -> [UInt8] {
        try Self.checkDeclaredSize(source, rawLength: rawLength, what: what())
        var error: String?
        let out = [UInt8](unsafeUninitializedCapacity: rawLength) { dst, count in
            let r = ZSTD_decompressDCtx(ctx, dst.baseAddress, rawLength, source.baseAddress, source.count)
            if ZSTD_isError(r) != 0 {
                error = String(cString: ZSTD_getErrorName(r)); count = 0
            } else if r != rawLength {
                error = "expanded to \(r) bytes, expected \(rawLength)"; count = 0
            } else {
                count = r
            }
        }
        if let error { throw FormatError(.compression, "\(what()) does not decompress: \(error)") }
        return out
    }
}
