import CFuzzDriver
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// What every fuzz target shares: turning libFuzzer's buffer into bytes, checking round-trip properties, and
/// writing the target's seed corpus from the product's own encoders (docs/fuzzing.md).
public enum Fuzz {
    /// libFuzzer's input as bytes (libFuzzer may pass a null pointer for the empty input).
    public static func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
        guard let data, size > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: size))
    }

    /// Runs libFuzzer on `test`. SwiftPM links an executable target's `main` to `<Module>_main` (so that tests can
    /// link the module); each target defines that symbol with this call, so that libFuzzer's driver runs either way.
    public static func main(
        _ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
        _ test: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt {
        var count = argc
        var arguments = argv
        return LLVMFuzzerRunDriver(&count, &arguments, test)
    }

    /// A property every accepted input must keep. A violation traps, so that libFuzzer records the input: it is
    /// a decoder bug even though nothing crashed (what was accepted does not mean what was sent).
    public static func expect(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
        if !condition() { fatalError("fuzz property violated: \(message())") }
    }

    /// When `OUTPOST_FUZZ_SEEDS` names a folder, writes `seeds` there (one file each) and exits: Deploy/fuzz.sh
    /// `--seeds` makes the committed corpus this way, from the encoders the product really uses. Called from each
    /// target's `LLVMFuzzerInitialize`, before libFuzzer reads any corpus.
    public static func writeSeedsIfAsked(_ seeds: () throws -> [(name: String, bytes: [UInt8])]) {
        guard let dir = getenv("OUTPOST_FUZZ_SEEDS").map({ String(cString: $0) }), !dir.isEmpty else { return }
        do {
            mkdir(dir, 0o755)
            for seed in try seeds() { try write(seed.bytes, to: dir + "/" + seed.name) }
        } catch {
            let message = "writing seeds to \(dir) failed: \(error)\n"
            _ = message.withCString { Glibc.write(2, $0, strlen($0)) }
            exit(1)
        }
        exit(0)
    }

    /// Writes `bytes` to `path` (replacing it); used for seeds and for targets whose decoder reads a file.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FuzzSupportError(message: "cannot create \(path): errno \(errno)") }
        defer { close(fd) }
        var done = 0
        try bytes.withUnsafeBytes { buf in
            while done < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FuzzSupportError(message: "cannot write \(path): errno \(errno)")
                }
                done += n
            }
        }
    }

    /// Deterministic pseudo-random bytes for seeds (a fixed corpus, byte for byte, on every run of `--seeds`).
    public static func pseudoRandom(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed &+ 0x9E37_79B9_7F4A_7C15
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }

    /// Compressible text-like bytes, so that seeds hold real zstd frames.
    public static func text(_ count: Int, seed: UInt64) -> [UInt8] {
        let words = ["outpost ", "relay ", "vault ", "backup ", "chunk ", "tree ", "pack ", "\n"].map { Array($0.utf8) }
        var out: [UInt8] = []
        var i = 0
        for b in pseudoRandom(count, seed: seed) where out.count < count {
            out += words[Int(b) % words.count]
            i += 1
        }
        return Array(out.prefix(count))
    }

    /// A blob as the client prepares it (compressed when that pays, as in a real upload).
    public static func blob(_ kind: BlobKind, _ plaintext: [UInt8]) -> PreparedBlob {
        plaintext.withUnsafeBytes { PreparedBlob.make(kind: kind, plaintext: $0, compressor: ZstdCompressor(level: 3)) }
    }
}

public struct FuzzSupportError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
