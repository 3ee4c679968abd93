import Foundation
import OutpostCore
import Testing

/// The scheduler as a pure function (issue 12): parsing and its refusals, days of the week, DST in both
/// directions, an outage over several slots, and a clock that jumps.
@Suite struct BackupScheduleTests {
    let berlin = TimeZone(identifier: "Europe/Berlin")!

    /// A Berlin wall-clock time, "yyyy-MM-dd HH:mm".
    func local(_ text: String) -> Date {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = berlin
        f.dateFormat = "yyyy-MM-dd HH:mm"
        return f.date(from: text)!
    }

    func show(_ d: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = berlin
        f.dateFormat = "EEE yyyy-MM-dd HH:mm zzz"
        return f.string(from: d)
    }

    @Test func schedulesReadAndSayThemselvesBack() throws {
        #expect(try BackupSchedule.parse("daily 21:00,12:00").description == "daily 12:00,21:00")
        #expect(try BackupSchedule.parse("Mon-Fri 22:30").description == "mon-fri 22:30")
        #expect(try BackupSchedule.parse("sat,sun 08:00").description == "sat,sun 08:00")
        #expect(try BackupSchedule.parse("mon,wed,fri 06:15").description == "mon,wed,fri 06:15")
        #expect(try BackupSchedule.parse("every 15m").description == "every 15m")
        #expect(try BackupSchedule.parse("every 24h").description == "every 24h")
        #expect(try BackupSchedule.parse("  every   1h ").description == "every 1h")
    }

    @Test(arguments: [
        ("daily 12:00,13:00,14:00,15:00", "at most 3"),
        ("daily 25:00", "not a time of day"),
        ("daily 12:5", "not a time of day"),
        ("fri-mon 10:00", "runs backwards"),
        ("funday 10:00", "not a day"),
        ("every 45m", "one of 15m"),
        ("every day", "one of 15m"),
        ("daily 10:00,10:00", "twice"),
        ("12:00", "malformed"),
        ("", "malformed"),
    ])
    func mistakesAreRefusedWithTheReason(_ spec: String, _ reason: String) {
        let e = #expect(throws: OutpostError.self) { try BackupSchedule.parse(spec) }
        #expect(e?.code == .usage && e?.message.contains(reason) == true, "\(e?.message ?? "")")
    }

    @Test func weekdaysSkipTheWeekend() throws {
        let s = try BackupSchedule.parse("mon-fri 22:30")
        // Friday 2026-03-13 after its run: next is Monday 2026-03-16.
        #expect(show(s.next(after: local("2026-03-13 22:30"), in: berlin)) == "Mon 2026-03-16 22:30 GMT+1")
        #expect(show(s.next(after: local("2026-03-16 08:00"), in: berlin)) == "Mon 2026-03-16 22:30 GMT+1")
        let twice = try BackupSchedule.parse("daily 12:00,21:00")
        #expect(show(twice.next(after: local("2026-03-16 12:00"), in: berlin)) == "Mon 2026-03-16 21:00 GMT+1")
        #expect(show(twice.next(after: local("2026-03-16 21:00"), in: berlin)) == "Tue 2026-03-17 12:00 GMT+1")
    }

    /// Clocks go forward (2026-03-29, 02:00 → 03:00): 02:30 does not exist, the run is at 03:30, once. Clocks go
    /// back (2026-10-25, 03:00 → 02:00): 02:30 exists twice, the run is at its first, once.
    @Test func daylightSavingTimeInBothDirections() throws {
        let s = try BackupSchedule.parse("daily 02:30")
        let spring = s.next(after: local("2026-03-29 00:00"), in: berlin)
        #expect(show(spring) == "Sun 2026-03-29 03:30 GMT+2")
        #expect(show(s.next(after: spring, in: berlin)) == "Mon 2026-03-30 02:30 GMT+2")
        let autumn = s.next(after: local("2026-10-25 00:00"), in: berlin)
        #expect(show(autumn) == "Sun 2026-10-25 02:30 GMT+2")
        #expect(show(s.next(after: autumn, in: berlin)) == "Mon 2026-10-26 02:30 GMT+1", "not again an hour later")
        // An interval counts elapsed time from local midnight: 23 slots of an hour on the short day.
        let hourly = try BackupSchedule.parse("every 1h")
        var t = local("2026-03-29 00:00")
        var n = 0
        while t < local("2026-03-30 00:00") {
            t = hourly.next(after: t, in: berlin)
            n += 1
        }
        #expect(n == 23)
    }

    /// A relay (or machine) down from Monday night to Wednesday noon: one run is due, for the latest time that
    /// passed, not one per missed time; after it, nothing until the next time.
    @Test func anOutageOverSeveralSlotsGivesOneRun() throws {
        let s = try BackupSchedule.parse("daily 22:30")
        let due = s.due(since: local("2026-03-16 22:30"), now: local("2026-03-18 12:00"), in: berlin)
        #expect(due.map(show) == "Tue 2026-03-17 22:30 GMT+1")
        #expect(s.due(since: local("2026-03-18 12:00"), now: local("2026-03-18 22:00"), in: berlin) == nil)
        #expect(s.due(since: local("2026-03-18 12:00"), now: local("2026-03-18 22:30"), in: berlin).map(show) == "Wed 2026-03-18 22:30 GMT+1")
        let quarter = try BackupSchedule.parse("every 15m")
        #expect(quarter.due(since: local("2026-03-18 10:00"), now: local("2026-03-18 10:14"), in: berlin) == nil)
        #expect(quarter.due(since: local("2026-03-18 10:00"), now: local("2026-03-18 13:07"), in: berlin).map(show) == "Wed 2026-03-18 13:00 GMT+1")
    }

    /// A clock set back (before the last run) makes nothing due; set forward, one run for the latest time.
    @Test func clockJumps() throws {
        let s = try BackupSchedule.parse("daily 12:00")
        #expect(s.due(since: local("2026-03-18 12:00"), now: local("2026-03-17 09:00"), in: berlin) == nil)
        #expect(s.due(since: local("2026-03-18 12:00"), now: local("2026-04-30 09:00"), in: berlin).map(show) == "Wed 2026-04-29 12:00 GMT+2")
    }
}
