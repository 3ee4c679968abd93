import OutpostCore

/// The rule for a relay's name in a vault, checked by `relay register` before it spends a credentials file and by
/// the vault when it registers (issue 8): 1–64 ASCII letters, digits, '.', '-' or '_', not starting with '.' or
/// '-'. Names are operator-facing (`vault relays`, `vault remove-relay NAME`, `vault credentials --recover NAME`),
/// so a control character or a second relay under the same name would make them print garbage or pick the wrong
/// relay.
public enum RelayName {
    public static let maxLength = 64
    public static let rule = "1 to \(maxLength) ASCII letters, digits, '.', '-' or '_', not starting with '.' or '-'"

    /// Why `name` is not a valid relay name, or nil.
    public static func problem(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        func allowed(_ c: UInt8) -> Bool {
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2e || c == 0x2d || c == 0x5f
        }
        guard !bytes.isEmpty, bytes.count <= maxLength, bytes.allSatisfy(allowed), bytes[0] != 0x2e, bytes[0] != 0x2d else {
            return "relay name \(quoted(name)) is not valid: a relay name is \(rule)"
        }
        return nil
    }

    /// Throws a usage error stating the rule.
    public static func validate(_ name: String) throws {
        if let problem = problem(name) { throw VaultError(.invalid, problem) }
    }

    /// `name` safe to print on a terminal (a registry written before names were checked may hold anything).
    public static func printable(_ name: String) -> String { Terminal.escaped(name) }

    /// `name` in double quotes, escaped.
    public static func quoted(_ name: String) -> String { Terminal.quoted(name) }
}
