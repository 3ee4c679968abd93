import Foundation
import NIOCore
import Synchronization

/// MARS-style bandwidth throttling: one limit during work hours on work days, another outside them.
public struct ThrottleSchedule: Sendable, Equatable {
    /// Bytes per second; nil = unlimited.
    public var workRate: Int?
    public var otherRate: Int?
    /// ISO weekdays 1 (Monday) … 7 (Sunday).
    public var workDays: Set<Int> = [1, 2, 3, 4, 5]
    /// Minutes since midnight, local time.
    public var workStart = 8 * 60
    public var workEnd = 18 * 60

    public init(workRate: Int? = nil, otherRate: Int? = nil) { self.workRate = workRate; self.otherRate = otherRate }

    /// MARS accepts 512 Kbit/s to 1023 Mbit/s.
    public static let minimumRate = 512 * 1000 / 8
    public static let maximumRate = 1023 * 1000 * 1000 / 8

    public func rate(at date: Date, calendar: Calendar = .current) -> Int? {
        let c = calendar.dateComponents([.weekday, .hour, .minute], from: date)
        let isoDay = ((c.weekday ?? 1) + 5) % 7 + 1
        let minute = (c.hour ?? 0) * 60 + (c.minute ?? 0)
        let working = workDays.contains(isoDay) && minute >= workStart && minute < workEnd
        return working ? workRate : otherRate
    }
}

/// A token bucket shared by the forwarder's uploads: `consume` waits until the bytes may go.
public final class Throttle: Sendable {
    let schedule: ThrottleSchedule
    let clock: @Sendable () -> Date
    private struct State { var tokens: Double; var last: Date }
    private let state: Mutex<State>

    public init(schedule: ThrottleSchedule, clock: @escaping @Sendable () -> Date = Date.init) {
        self.schedule = schedule
        self.clock = clock
        state = Mutex(State(tokens: 0, last: clock()))
    }

    public func consume(_ bytes: Int) async throws {
        while true {
            let now = clock()
            // A rate from relay.toml is validated there; clamped here too so that no setting can divide by zero
            // or ask for a wait that does not fit an Int.
            guard let configured = schedule.rate(at: now) else { return }
            let rate = max(1, configured)
            let wait: Double = state.withLock { s in
                // A burst of at most a quarter second keeps the measured rate close to the limit.
                let burst = Double(rate) / 4
                s.tokens = min(burst, s.tokens + now.timeIntervalSince(s.last) * Double(rate))
                s.last = now
                if s.tokens >= 0 {
                    s.tokens -= Double(bytes)
                    return 0
                }
                return -s.tokens / Double(rate)
            }
            if wait <= 0 { return }
            try await Task.sleep(for: .milliseconds(max(1, Int(min(wait, 3600) * 1000))))
        }
    }
}

/// An upload body cut into 256 KiB slices, each let through by the throttle before it goes out.
struct ThrottledBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let bytes: [UInt8]
    let throttle: Throttle
    static let slice = 256 << 10

    struct AsyncIterator: AsyncIteratorProtocol {
        let bytes: [UInt8]
        let throttle: Throttle
        var offset = 0
        mutating func next() async throws -> ByteBuffer? {
            guard offset < bytes.count else { return nil }
            let end = Swift.min(bytes.count, offset + ThrottledBody.slice)
            try await throttle.consume(end - offset)
            defer { offset = end }
            return ByteBuffer(bytes: bytes[offset..<end])
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(bytes: bytes, throttle: throttle) }
}
