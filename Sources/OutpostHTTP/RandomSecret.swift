import OutpostCore

/// Secrets of credentials, enrollment tokens and vault ids: random bytes, hex-encoded.
public enum RandomSecret {
    public static func make(bytes: Int = 32) -> String {
        var g = SystemRandomNumberGenerator()
        return Hex.encode((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &g) })
    }
}
