import OutpostCore
import Testing

@Suite struct BlobIDTests {
    @Test func hashOfAbcIsTheKnownSHA256() {
        let id = BlobID.hash(Array("abc".utf8))
        #expect(id.hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(id.bytes.first == 0xba)
        #expect(id.bytes.last == 0xad)
        #expect(id.shortHex == "ba7816bf")
        #expect(id.description == id.hex)
    }

    @Test func hashOfEmptyInput() {
        #expect(BlobID.hash([]).hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func bufferAndArrayHashesAgree() {
        let data = pseudoRandomBytes(count: 10_000, seed: 21)
        #expect(data.withUnsafeBytes { BlobID.hash($0) } == BlobID.hash(data))
    }

    @Test func hexRoundTrip() throws {
        for seed in 0..<20 as Range<UInt64> {
            let id = BlobID.hash(pseudoRandomBytes(count: 64, seed: seed))
            #expect(id.hex.count == 64)
            #expect(try #require(BlobID(hex: id.hex)) == id)
        }
        let upper = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
        #expect(BlobID(hex: upper) == BlobID.hash(Array("abc".utf8)))
    }

    @Test(arguments: [
        "",
        "ba",
        String(repeating: "a", count: 63),
        String(repeating: "a", count: 65),
        String(repeating: "a", count: 66),
        String(repeating: "a", count: 62) + "ag",
        String(repeating: "a", count: 62) + " a",
        String(repeating: "a", count: 62) + "é",  // 64 UTF-8 bytes, not hex
        "0x" + String(repeating: "a", count: 62),
    ])
    func badHexIsRejected(_ hex: String) {
        #expect(BlobID(hex: hex) == nil)
    }

    @Test func bytesRoundTrip() throws {
        let bytes = (0..<32).map { UInt8($0) }
        let id = try #require(BlobID(bytes: bytes))
        #expect(id.bytes == bytes)
        #expect(id.hex == "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
        #expect(id.withUnsafeBytes { Array($0) } == bytes)
        #expect(bytes.withUnsafeBytes { BlobID(rawBuffer: $0) } == id)
        #expect(BlobID(bytes: bytes[0..<32]) == id)
        #expect(BlobID(bytes: Array(bytes.prefix(31))) == nil)
        #expect(BlobID(bytes: bytes + [0]) == nil)
        #expect(BlobID(bytes: [UInt8]()) == nil)
    }

    @Test func orderIsByteWise() throws {
        var low = [UInt8](repeating: 0, count: 32)
        low[31] = 0xff
        var high = [UInt8](repeating: 0, count: 32)
        high[0] = 0x01
        let a = try #require(BlobID(bytes: low))
        let b = try #require(BlobID(bytes: high))
        #expect(a < b)
        #expect(!(b < a))
        #expect(!(a < a))
        let ids = (0..<50 as Range<UInt64>).map { BlobID.hash(pseudoRandomBytes(count: 8, seed: $0)) }
        #expect(ids.sorted().map(\.hex) == ids.map(\.hex).sorted())
    }

    @Test func hexHelpers() {
        #expect(Hex.encode([0x00, 0x0f, 0xf0, 0xff]) == "000ff0ff")
        #expect(Hex.decode("000fF0Ff") == [0x00, 0x0f, 0xf0, 0xff])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("") == [])
        #expect(Hex.isHex("deadBEEF"))
        #expect(!Hex.isHex(""))
        #expect(!Hex.isHex("xyz"))
    }
}
