import Foundation

/// When a protection group backs up (issue 12): times of day on days of the week, as in MARS (at most three a
/// day: `daily 12:00,21:00`, `mon-fri 22:30`, `sat,sun 08:00`), or an interval from DPM's set (`every 15m`,
/// `30m`, `1h`, `2h`, `4h`, `6h`, `12h`, `24h`). Times are the machine's local wall-clock times. The scheduler is
/// a pure function of (schedule, time zone, clock, last run), so that days, DST changes and outages are tested
/// without waiting.
public struct BackupSchedule: Sendable, Equatable, Codable, CustomStringConvertible {
    public enum Plan: Sendable, Equatable, Codable {
        /// Days are 1 (Monday) to 7 (Sunday); minutes after local midnight, ascending.
        case times(days: [Int], minutes: [Int])
        /// Every so many minutes, counted in elapsed time from local midnight.
        case every(minutes: Int)
    }

    public let plan: Plan

    /// The schedule as `parse` reads it (canonical: `mon-fri 22:30`, `daily 12:00,21:00`, `every 1h`).
    public var description: String {
        switch plan {
        case .every(let m): return "every " + (m % 60 == 0 ? "\(m / 60)h" : "\(m)m")
        case .times(let days, let minutes):
            let clock = minutes.map { String(format: "%02d:%02d", $0 / 60, $0 % 60) }.joined(separator: ",")
            return Self.describe(days) + " " + clock
        }
    }

    public static let intervals = [15, 30, 60, 120, 240, 360, 720, 1440]
    static let dayNames = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    public static let maxTimesPerDay = 3

    public init(plan: Plan) { self.plan = plan }

    /// Reads a schedule; a malformed one is refused with what is wrong and what is accepted.
    public static func parse(_ spec: String) throws -> BackupSchedule {
        let words = spec.lowercased().split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        let accepted =
            "a schedule is `daily HH:MM[,HH:MM[,HH:MM]]`, `DAYS HH:MM[,…]` (DAYS like mon-fri or sat,sun), or `every 15m|30m|1h|2h|4h|6h|12h|24h`"
        guard words.count == 2 else { throw OutpostError(.usage, "schedule \(Terminal.quoted(spec)) is malformed: \(accepted)") }
        if words[0] == "every" {
            let w = words[1]
            let n = Int(w.dropLast())
            let minutes = w.hasSuffix("m") ? n : w.hasSuffix("h") ? n.map { $0 * 60 } : nil
            guard let minutes, intervals.contains(minutes) else {
                throw OutpostError(.usage, "schedule \(Terminal.quoted(spec)): the interval must be one of 15m, 30m, 1h, 2h, 4h, 6h, 12h, 24h")
            }
            return BackupSchedule(plan: .every(minutes: minutes))
        }
        let days = try parseDays(words[0], spec: spec, accepted: accepted)
        var minutes: [Int] = []
        for t in words[1].split(separator: ",", omittingEmptySubsequences: false) {
            let parts = t.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, parts[1].count == 2, let h = Int(parts[0]), let m = Int(parts[1]), (0...23).contains(h), (0...59).contains(m)
            else {
                throw OutpostError(
                    .usage, "schedule \(Terminal.quoted(spec)): \(Terminal.quoted(String(t))) is not a time of day HH:MM (00:00 to 23:59)")
            }
            minutes.append(h * 60 + m)
        }
        guard Set(minutes).count == minutes.count else {
            throw OutpostError(.usage, "schedule \(Terminal.quoted(spec)) names a time twice")
        }
        guard minutes.count <= maxTimesPerDay else {
            throw OutpostError(.usage, "schedule \(Terminal.quoted(spec)) has \(minutes.count) times a day; at most \(maxTimesPerDay), as in MARS")
        }
        return BackupSchedule(plan: .times(days: days, minutes: minutes.sorted()))
    }

    static func parseDays(_ word: String, spec: String, accepted: String) throws -> [Int] {
        if word == "daily" { return Array(1...7) }
        var days = Set<Int>()
        for part in word.split(separator: ",", omittingEmptySubsequences: false) {
            let ends = part.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
            let numbers = ends.compactMap { dayNames.firstIndex(of: $0).map { $0 + 1 } }
            guard numbers.count == ends.count, (1...2).contains(numbers.count) else {
                throw OutpostError(
                    .usage,
                    "schedule \(Terminal.quoted(spec)): \(Terminal.quoted(String(part))) is not a day or a range of days (mon … sun); \(accepted)")
            }
            if numbers.count == 1 {
                days.insert(numbers[0])
            } else {
                guard numbers[0] <= numbers[1] else {
                    throw OutpostError(.usage, "schedule \(Terminal.quoted(spec)): the range \(part) runs backwards; write it from the earlier day")
                }
                for d in numbers[0]...numbers[1] { days.insert(d) }
            }
        }
        return days.sorted()
    }

    static func describe(_ days: [Int]) -> String {
        if days == Array(1...7) { return "daily" }
        // Runs of consecutive days as ranges: mon-fri, sat,sun.
        var parts: [String] = []
        var i = 0
        while i < days.count {
            var j = i
            while j + 1 < days.count && days[j + 1] == days[j] + 1 { j += 1 }
            parts.append(
                j - i >= 2 ? "\(dayNames[days[i] - 1])-\(dayNames[days[j] - 1])" : (i...j).map { dayNames[days[$0] - 1] }.joined(separator: ","))
            i = j + 1
        }
        return parts.joined(separator: ",")
    }

    /// The first planned run strictly after `date`. A time that does not exist that day (the hour skipped when
    /// clocks go forward) runs at the same minutes of the next hour; a time that exists twice (clocks go back)
    /// runs once, at its first occurrence.
    public func next(after date: Date, in timeZone: TimeZone) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        switch plan {
        case .every(let minutes):
            let midnight = calendar.startOfDay(for: date)
            let step = TimeInterval(minutes * 60)
            let k = (date.timeIntervalSince(midnight) / step).rounded(.down) + 1
            let candidate = midnight.addingTimeInterval(k * step)
            // Slots restart at each local midnight.
            let nextMidnight = calendar.date(byAdding: .day, value: 1, to: midnight) ?? candidate
            return min(candidate, nextMidnight)
        case .times(let days, let minutes):
            var best: Date?
            for d in days {
                for m in minutes {
                    // Calendar weekday: 1 is Sunday … 7 is Saturday.
                    let components = DateComponents(hour: m / 60, minute: m % 60, second: 0, weekday: d % 7 + 1)
                    if let t = calendar.nextDate(
                        after: date, matching: components, matchingPolicy: .nextTimePreservingSmallerComponents, repeatedTimePolicy: .first)
                    {
                        if best == nil || t < best! { best = t }
                    }
                }
            }
            return best ?? date.addingTimeInterval(7 * 86400)
        }
    }

    /// The run that is due at `now`: the latest planned time after `since` (the last run's start, or when the plan
    /// began) and at or before `now`; nil when none passed. However many times passed (a relay or machine down
    /// over several), one run is due, not one per missed time.
    public func due(since: Date, now: Date, in timeZone: TimeZone) -> Date? {
        var latest: Date?
        var t = next(after: since, in: timeZone)
        while t <= now {
            latest = t
            t = next(after: t, in: timeZone)
        }
        return latest
    }
}
