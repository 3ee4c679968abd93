import Foundation
import OutpostCore
import Testing

/// The vault tier: grandfather-father-son, the newest point of each of the last N days, weeks, months and years,
/// in a given time zone (Europe/Berlin here; ISO weeks start on Monday). 2026-03-15 is a Sunday.
@Suite struct VaultRetentionTests {
    let now = local("2026-03-15 12:00")

    /// Of several points in one day only the newest stays; 23:59:59 and 00:00:00 are two days.
    @Test func theNewestOfEachDayIsKept() {
        let points = candidates([
            local("2026-03-14 01:00"), local("2026-03-14 09:00"), local("2026-03-14 23:59:59"), local("2026-03-15 00:00:00"),
            local("2026-03-15 08:00"), local("2026-03-13 10:00"),
        ])
        let d = RetentionPolicy(vaultDaily: 7).vaultTier(points, now: now, timeZone: berlin)
        #expect(kept(d) == ["p2", "p4", "p5"])
        #expect(d[2].keptBy == [.period(.daily, "2026-03-14")])
        #expect(d[4].keptBy == [.newest, .period(.daily, "2026-03-15")])
        #expect(d[2].keptBy[0].description == "newest of day 2026-03-14 (vault_daily)")
    }

    /// The day is the local one: 22:30 and 23:30 UTC are one day in UTC, two days in Berlin.
    @Test func periodsFollowTheTimeZone() {
        let utc = TimeZone(identifier: "UTC")!
        let points = candidates([local("2026-03-10 22:30", utc), local("2026-03-10 23:30", utc), local("2026-03-12 10:00", utc)])
        let policy = RetentionPolicy(vaultDaily: 7)
        #expect(kept(policy.vaultTier(points, now: now, timeZone: berlin)) == ["p0", "p1", "p2"])
        #expect(kept(policy.vaultTier(points, now: now, timeZone: utc)) == ["p1", "p2"])
    }

    /// The last 7 days are today and the 6 before: 03-09 00:30 is in, 03-08 23:00 is out.
    @Test func theDailyWindowCountsBackFromToday() {
        let points = candidates([local("2026-03-08 23:00"), local("2026-03-09 00:30"), local("2026-03-15 10:00")])
        #expect(kept(RetentionPolicy(vaultDaily: 7).vaultTier(points, now: now, timeZone: berlin)) == ["p1", "p2"])
    }

    /// Across the switch to summer time (2026-03-29, a 23-hour day) the window is still 7 calendar days.
    @Test func daysStayCalendarDaysAcrossDaylightSaving() {
        let points = candidates([
            local("2026-03-26 23:30"), local("2026-03-27 00:10"), local("2026-03-28 23:30"), local("2026-03-29 00:30"),
            local("2026-04-02 09:00"),
        ])
        let d = RetentionPolicy(vaultDaily: 7).vaultTier(points, now: local("2026-04-02 12:00"), timeZone: berlin)
        #expect(kept(d) == ["p1", "p2", "p3", "p4"])
        #expect(d[3].keptBy == [.period(.daily, "2026-03-29")])
    }

    /// ISO weeks: Sunday 23:30 and Monday 00:30 are two weeks; the newest of a week stays; 4 weeks back from
    /// this one start on Monday 02-16.
    @Test func theNewestOfEachWeekIsKept() {
        let points = candidates([
            local("2026-02-15 23:00"), local("2026-02-16 01:00"), local("2026-03-08 23:30"), local("2026-03-09 00:30"),
            local("2026-03-11 10:00"),
        ])
        let d = RetentionPolicy(vaultWeekly: 4).vaultTier(points, now: now, timeZone: berlin)
        #expect(kept(d) == ["p1", "p2", "p4"])
        #expect(d[1].keptBy == [.period(.weekly, "2026-W08")])
        #expect(d[2].keptBy == [.period(.weekly, "2026-W10")])
    }

    /// A week is named by its ISO year: Friday 2027-01-01 is in week 53 of 2026.
    @Test func weeksAcrossNewYearAreNamedByTheirISOYear() {
        let points = candidates([local("2026-12-27 10:00"), local("2027-01-01 10:00")])
        let d = RetentionPolicy(vaultWeekly: 4).vaultTier(points, now: local("2027-01-03 12:00"), timeZone: berlin)
        #expect(d[1].keptBy == [.newest, .period(.weekly, "2026-W53")])
        #expect(d[0].keptBy == [.period(.weekly, "2026-W52")])
    }

    @Test func theNewestOfEachMonthIsKept() {
        let points = candidates([
            local("2025-12-31 23:30"), local("2026-01-01 00:30"), local("2026-02-10 10:00"), local("2026-02-27 10:00"), local("2026-03-01 10:00"),
        ])
        let d = RetentionPolicy(vaultMonthly: 3).vaultTier(points, now: now, timeZone: berlin)
        #expect(kept(d) == ["p1", "p3", "p4"])
        #expect(d[3].keptBy == [.period(.monthly, "2026-02")])
    }

    @Test func theNewestOfEachYearIsKept() {
        let points = candidates([local("2024-12-31 23:59"), local("2025-01-01 00:01"), local("2025-06-01 10:00"), local("2026-02-01 10:00")])
        let d = RetentionPolicy(vaultYearly: 2).vaultTier(points, now: now, timeZone: berlin)
        #expect(kept(d) == ["p2", "p3"])
        #expect(d[2].keptBy == [.period(.yearly, "2025")])
    }

    /// A point kept by any rule is kept, and each rule that keeps it is named.
    @Test func anyRuleKeepsAPointAndEachIsNamed() {
        let points = candidates([local("2026-01-20 10:00"), local("2026-01-25 10:00"), local("2026-03-15 10:00")])
        let d = RetentionPolicy(vaultDaily: 7, vaultWeekly: 4, vaultMonthly: 3, vaultYearly: 1).vaultTier(points, now: now, timeZone: berlin)
        #expect(kept(d) == ["p1", "p2"], "01-20 is not the newest of January")
        #expect(d[1].keptBy == [.period(.monthly, "2026-01")])
        #expect(
            d[2].keptBy == [
                .newest, .period(.daily, "2026-03-15"), .period(.weekly, "2026-W11"), .period(.monthly, "2026-03"), .period(.yearly, "2026"),
            ])
    }

    /// Two points finished at the same instant: the one with the greater id counts as the newer, as the store
    /// lists them.
    @Test func aTieGoesToTheGreaterID() {
        let t = local("2026-03-14 10:00")
        let points = [
            RetentionCandidate(id: "bb", finishedAt: t), RetentionCandidate(id: "aa", finishedAt: t), RetentionCandidate(id: "cc", finishedAt: now),
        ]
        #expect(kept(RetentionPolicy(vaultDaily: 7).vaultTier(points, now: now, timeZone: berlin)) == ["bb", "cc"])
    }
}
