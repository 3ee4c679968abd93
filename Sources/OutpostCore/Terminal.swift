/// Text from the outside (names of machines, relays, files) made safe to print on a terminal.
public enum Terminal {
    /// Control characters (C0, DEL, C1) and bytes that are not UTF-8 are shown as escapes (`\e`, `\n`, `\x9b`,
    /// `\\` for a backslash), so a name can never move the cursor, change colours or rewrite the screen.
    public static func escaped(_ text: String) -> String { escaped(bytes: Array(text.utf8)) }

    public static func escaped(bytes: [UInt8]) -> String {
        var out = ""
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b < 0x80 {
                switch b {
                case 0x5c: out += "\\\\"
                case 0x0a: out += "\\n"
                case 0x09: out += "\\t"
                case 0x0d: out += "\\r"
                case 0x1b: out += "\\e"
                case 0x00..<0x20, 0x7f: out += hex(b)
                default: out.unicodeScalars.append(Unicode.Scalar(b))
                }
                i += 1
                continue
            }
            // A whole UTF-8 sequence, or an escape for a byte that does not start one.
            let len = b >= 0xf0 && b < 0xf5 ? 4 : b >= 0xe0 ? 3 : b >= 0xc2 && b < 0xe0 ? 2 : 0
            if len > 0, i + len <= bytes.count, let s = String(validating: bytes[i..<i + len], as: UTF8.self),
                let scalar = s.unicodeScalars.first, !(0x80...0x9f).contains(scalar.value)
            {
                out += s
                i += len
            } else if len == 2, i + 2 <= bytes.count, String(validating: bytes[i..<i + 2], as: UTF8.self) != nil {
                // A C1 control character (U+0080…U+009F) encoded as UTF-8.
                out += "\\u{" + String(Int(bytes[i] & 0x1f) << 6 | Int(bytes[i + 1] & 0x3f), radix: 16) + "}"
                i += 2
            } else {
                out += hex(b)
                i += 1
            }
        }
        return out
    }

    /// A name in double quotes, escaped for a terminal.
    public static func quoted(_ text: String) -> String {
        var out = "\""
        for ch in escaped(text) { if ch == "\"" { out += "\\\"" } else { out.append(ch) } }
        return out + "\""
    }

    private static func hex(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return "\\x" + String(digits[Int(b >> 4)]) + String(digits[Int(b & 15)])
    }
}
