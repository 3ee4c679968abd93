import OutpostCore
import Testing

/// The one escaper for names printed on a terminal (ls, find, failed files, vault relays, error messages).
@Suite struct TerminalTests {
    @Test func controlCharactersAndBadBytesAreEscaped() {
        #expect(Terminal.escaped("a\u{1b}[2Jb\n\t\\") == "a\\e[2Jb\\n\\t\\\\")
        #expect(Terminal.escaped("bell\u{07}del\u{7f}") == "bell\\x07del\\x7f")
        #expect(Terminal.escaped("c1\u{9b}x") == "c1\\u{9b}x")
        #expect(Terminal.escaped(bytes: [0x61, 0xff, 0xc3]) == "a\\xff\\xc3")
        #expect(Terminal.escaped("café ✓") == "café ✓", "printable UTF-8 stays as it is")
        #expect(Terminal.quoted("a\"b") == "\"a\\\"b\"")
    }
}
