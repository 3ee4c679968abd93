import OutpostCore

/// Secrets of credentials, enrollment tokens and vault ids: random bytes, hex-encoded.
public enum RandomSecret {
    public static func make(bytes: Int = 32) -> String {
        var g = SystemRandomNumberGenerator()
        return Hex.encode((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &g) })
    }
}

/// The text of a bearer credential, `<scheme>:<owner>:<secret>` (`outpost1:` a machine's, `vault1:` a relay's):
/// the owner is not empty and the secret has at least 32 characters.
enum CredentialText {
    static func make(_ scheme: String, _ owner: String, _ secret: String) -> String { "\(scheme):\(owner):\(secret)" }

    static func parse(_ text: String, scheme: String) -> (owner: String, secret: String)? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == scheme, !parts[1].isEmpty, parts[2].count >= 32 else { return nil }
        return (String(parts[1]), String(parts[2]))
    }
}
