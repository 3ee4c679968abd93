import FuzzSupport
import OutpostCore

/// The relay's binary bodies (docs/protocol.md): id lists (`WireFormat.decodeIDs`, both limits the relay uses) and
/// blob frames (`WireFormat.decodeFrames`), each frame then opened as the relay's upload and the client's fetch do
/// (decompress to the claimed length, SHA-256 against the id) and checked as the store checks a blob.
///
/// Input: one selector byte, then the body. Selector % 4: 0 ids (limit 8192), 1 ids (limit 64), 2–3 frames.

nonisolated(unsafe) let decompressor = ZstdDecompressor()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWire(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = Fuzz.bytes(data, size)
    guard let selector = input.first else { return 0 }
    let body = Array(input.dropFirst())
    switch selector % 4 {
    case 0, 1:
        let limit = selector % 4 == 0 ? WireFormat.maxIDsPerRequest : WireFormat.maxFetchBlobs
        guard let ids = try? WireFormat.decodeIDs(body, max: limit) else { return 0 }
        Fuzz.expect(ids.count <= limit, "decodeIDs returned \(ids.count) ids, above its limit \(limit)")
        Fuzz.expect(WireFormat.encodeIDs(ids) == body, "an id list does not re-encode to the bytes it was decoded from")
    default:
        guard let frames = try? WireFormat.decodeFrames(body) else { return 0 }
        let again = try? WireFormat.decodeFrames(WireFormat.encodeFrames(frames))
        Fuzz.expect(again.map { same($0, frames) } ?? false, "decoded frames do not survive encodeFrames + decodeFrames")
        for f in frames {
            Fuzz.expect(f.rawLength <= WireFormat.maxRawLength, "a frame claims \(f.rawLength) raw bytes, above the limit")
            f.stored.withUnsafeBytes { stored in
                _ = try? PreparedBlob.open(
                    stored: stored, id: f.id, compression: f.compression, rawLength: f.rawLength,
                    decompressor: decompressor, what: "fuzzed frame")
                try? PreparedBlob.checkIntegrity(
                    stored: stored, id: f.id, compression: f.compression, rawLength: f.rawLength,
                    decompressor: decompressor, what: "fuzzed frame")
            }
        }
    }
    return 0
}

private func same(_ a: [PreparedBlob], _ b: [PreparedBlob]) -> Bool {
    a.count == b.count
        && zip(a, b).allSatisfy {
            $0.id == $1.id && $0.kind == $1.kind && $0.compression == $1.compression && $0.stored == $1.stored && $0.rawLength == $1.rawLength
        }
}

@_cdecl("FuzzWire_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    Fuzz.main(argc, argv, fuzzWire)
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?)
    -> CInt
{
    Fuzz.writeSeedsIfAsked {
        let blobs = [
            Fuzz.blob(.data, Fuzz.text(3000, seed: 1)),
            Fuzz.blob(.data, Fuzz.pseudoRandom(200, seed: 2)),
            Fuzz.blob(.tree, Tree(nodes: [Node(name: Array("a".utf8), type: .file, size: 0)]).encode()),
            Fuzz.blob(.data, []),
        ]
        let ids = blobs.map(\.id)
        return [
            ("ids-4", [0] + WireFormat.encodeIDs(ids)),
            ("ids-fetch-2", [1] + WireFormat.encodeIDs(ids.prefix(2))),
            ("ids-empty", [0]),
            ("frames-4", [2] + WireFormat.encodeFrames(blobs)),
            ("frames-zstd", [2] + WireFormat.encodeFrames([blobs[0]])),
            ("frames-raw", [3] + WireFormat.encodeFrames([blobs[1], blobs[3]])),
        ]
    }
    return 0
}
