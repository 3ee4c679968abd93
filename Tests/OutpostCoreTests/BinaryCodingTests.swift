import OutpostCore
import Testing

@Suite struct BinaryCodingTests {
    @Test(
        arguments: [
            (0, [0x00]),
            (127, [0x7f]),
            (128, [0x80, 0x01]),
            (300, [0xac, 0x02]),
            (UInt64.max, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        ] as [(UInt64, [UInt8])])
    func varintRoundTrip(_ value: UInt64, _ encoding: [UInt8]) throws {
        var w = BinaryWriter()
        w.varint(value)
        #expect(w.bytes == encoding)
        var r = BinaryReader(w.bytes, what: "test")
        #expect(try r.varint() == value)
        #expect(r.isAtEnd)
    }

    @Test func varintsInSequence() throws {
        let values: [UInt64] = [0, 1, 127, 128, 16383, 16384, 1 << 32, 1 << 63, .max]
        var w = BinaryWriter()
        for v in values { w.varint(v) }
        var r = BinaryReader(w.bytes, what: "test")
        for v in values { #expect(try r.varint() == v) }
        #expect(r.isAtEnd)
    }

    @Test(
        arguments: [
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],  // 2^64 exactly: one bit too many
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
            [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00],  // 11 bytes
            [UInt8](repeating: 0xff, count: 20),
        ] as [[UInt8]])
    func overflowingVarintThrows(_ bytes: [UInt8]) {
        var r = BinaryReader(bytes, what: "test")
        expectFormatError(.invalidValue) { _ = try r.varint() }
    }

    @Test func unterminatedVarintIsTruncated() {
        var r = BinaryReader([0x80, 0x80], what: "test")
        expectFormatError(.truncated) { _ = try r.varint() }
    }

    @Test func countRejectsValuesAboveTheLimit() throws {
        var w = BinaryWriter()
        w.varint(1000)
        var atLimit = BinaryReader(w.bytes, what: "test")
        #expect(try atLimit.count(max: 1000) == 1000)
        var aboveLimit = BinaryReader(w.bytes, what: "test")
        expectFormatError(.invalidValue) { _ = try aboveLimit.count(max: 999) }
        var huge = BinaryWriter()
        huge.varint(UInt64.max)
        var r = BinaryReader(huge.bytes, what: "test")
        expectFormatError(.invalidValue) { _ = try r.count(max: Int.max) }
    }

    @Test func fixedWidthIntegersAreLittleEndian() throws {
        var w = BinaryWriter()
        w.u8(0xab)
        w.u16(0x0102)
        w.u32(0x0304_0506)
        w.u64(0x0708_090a_0b0c_0d0e)
        w.i64(-2)
        #expect(
            w.bytes == [
                0xab, 0x02, 0x01, 0x06, 0x05, 0x04, 0x03, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x09, 0x08, 0x07,
                0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ])
        var r = BinaryReader(w.bytes, what: "test")
        #expect(try r.u8() == 0xab)
        #expect(try r.u16() == 0x0102)
        #expect(try r.u32() == 0x0304_0506)
        #expect(try r.u64() == 0x0708_090a_0b0c_0d0e)
        #expect(try r.i64() == -2)
        #expect(r.isAtEnd)
        #expect(r.remaining == 0)
    }

    @Test func dataAndIDRoundTrip() throws {
        let id = BlobID.hash(Array("abc".utf8))
        var w = BinaryWriter()
        w.data([1, 2, 3])
        w.data([UInt8]())
        w.id(id)
        w.raw([9, 9])
        #expect(w.bytes.count == 4 + 1 + 32 + 2)
        var r = BinaryReader(w.bytes, what: "test")
        #expect(try r.data() == [1, 2, 3])
        #expect(try r.data() == [])
        #expect(try r.id() == id)
        #expect(r.offset == 37)
        #expect(try r.raw(2) == [9, 9])
    }

    @Test func readingPastTheEndIsTruncated() {
        var empty = BinaryReader([], what: "test")
        expectFormatError(.truncated) { _ = try empty.u8() }
        var three = BinaryReader([1, 2, 3], what: "test")
        expectFormatError(.truncated) { _ = try three.u32() }
        #expect(three.offset == 0)
        expectFormatError(.truncated) { _ = try three.u64() }
        expectFormatError(.truncated) { _ = try three.raw(4) }
        expectFormatError(.truncated) { _ = try three.raw(-1) }
        var short = BinaryReader([UInt8](repeating: 0, count: 31), what: "test")
        expectFormatError(.truncated) { _ = try short.id() }
        var offsetAtEnd = BinaryReader([1, 2], what: "test", offset: 2)
        expectFormatError(.truncated) { _ = try offsetAtEnd.u8() }
    }

    @Test func dataLongerThanTheInputIsRejected() {
        var r = BinaryReader([5, 1, 2], what: "test")
        #expect(throws: FormatError.self) { _ = try r.data() }
        var limited = BinaryReader([3, 1, 2, 3], what: "test")
        expectFormatError(.invalidValue) { _ = try limited.data(max: 2) }
    }

    @Test func errorMessageNamesTheObject() {
        var r = BinaryReader([], what: "tree 1234abcd")
        let error = expectFormatError(.truncated) { _ = try r.u8() }
        #expect(error?.message.contains("tree 1234abcd") == true)
    }
}
