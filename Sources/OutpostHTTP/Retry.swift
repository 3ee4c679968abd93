/// A failure worth trying again (connection refused or reset, a cut-off answer, HTTP 502/503/504).
public struct TransientFailure: Error, Sendable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
}

/// Retries with exponential backoff (0.25 s, doubling, at most 8 s between attempts) — the one policy the relay
/// client and the vault client share.
public enum Retry {
    /// Runs `body` up to `attempts` times while it throws `TransientFailure`; any other error ends at once.
    /// When every attempt failed, `exhausted(attempts, lastReason)` makes the error that is thrown.
    public static func run<T>(
        attempts: Int, onRetry: (Int, String, Double) -> Void = { _, _, _ in },
        exhausted: (Int, String) -> any Error, _ body: () async throws -> T
    ) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await body()
            } catch let t as TransientFailure {
                if attempt >= max(1, attempts) { throw exhausted(attempt, t.reason) }
                let delay = min(8.0, 0.25 * Double(1 << min(attempt - 1, 10)))
                onRetry(attempt, t.reason, delay)
                try await Task.sleep(for: .milliseconds(Int(delay * 1000)))
            }
        }
    }
}
