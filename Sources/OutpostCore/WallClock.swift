import Foundation

/// The time of day the scheduling parts read (the agent's scheduler, the relay's job deadlines and alert
/// checks): the system's, or, for end-to-end tests only, the system's plus an offset in seconds read from the
/// file named by `OUTPOST_TEST_CLOCK_FILE` at each reading, so that a test moves a running process's clock
/// forward (a missed slot, a clock jump) without waiting. Durations (time-outs, retries) keep the monotonic clock.
public struct WallClock: Sendable {
    let offsetFile: String?

    public static let system = WallClock(offsetFile: nil)

    public init(offsetFile: String?) { self.offsetFile = offsetFile }

    /// The system clock, unless the test variable names an offset file.
    public static func fromEnvironment() -> WallClock {
        WallClock(offsetFile: ProcessInfo.processInfo.environment["OUTPOST_TEST_CLOCK_FILE"].flatMap { $0.isEmpty ? nil : $0 })
    }

    public func now() -> Date {
        guard let offsetFile,
            let text = try? String(contentsOfFile: offsetFile, encoding: .utf8),
            let offset = Double(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { return Date() }
        return Date().addingTimeInterval(offset)
    }

    /// Whether the clock is a test's (logged at start, so that it is never mistaken for the real one).
    public var isShifted: Bool { offsetFile != nil }
}
