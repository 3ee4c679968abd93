/// The rule for a protected machine's name, shared by the CLI and the relay's catalog: 1–64 ASCII letters,
/// digits, '.', '-' or '_', starting with a letter or a digit. So `.`, `..` and `-rf` are refused: a name is used
/// in paths, command lines and terminal output.
public enum MachineName {
    public static let maxLength = 64

    public static func problem(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= maxLength else {
            return "machine name \(Terminal.quoted(name)) must be 1 to \(maxLength) characters long"
        }
        func alnum(_ c: UInt8) -> Bool { (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) }
        guard bytes.allSatisfy({ alnum($0) || $0 == 0x2d || $0 == 0x2e || $0 == 0x5f }) else {
            return "machine name \(Terminal.quoted(name)) may hold only letters, digits, '.', '-' and '_'"
        }
        guard alnum(bytes[0]) else {
            return "machine name \(Terminal.quoted(name)) must start with a letter or a digit"
        }
        return nil
    }

    /// Throws a usage error naming the rule.
    public static func validate(_ name: String) throws(OutpostError) {
        if let problem = problem(name) { throw OutpostError(.usage, problem + "; choose another name") }
    }
}
