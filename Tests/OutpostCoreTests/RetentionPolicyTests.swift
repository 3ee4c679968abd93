import Foundation
import OutpostCore
import Testing

let berlin = TimeZone(identifier: "Europe/Berlin")!

/// "2026-03-15 12:00" (or with ":ss") as wall-clock time in `zone`.
func local(_ text: String, _ zone: TimeZone = berlin) -> Date {
    let p = text.split(whereSeparator: { $0 == " " || $0 == "-" || $0 == ":" }).map { Int($0)! }
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = zone
    return calendar.date(from: DateComponents(year: p[0], month: p[1], day: p[2], hour: p[3], minute: p[4], second: p.count > 5 ? p[5] : 0))!
}

/// Points named by their index ("p0", "p1", …), finished at the given times.
func candidates(_ times: [Date], keepUntil: [Int: Date] = [:]) -> [RetentionCandidate] {
    times.enumerated().map { RetentionCandidate(id: "p\($0.offset)", finishedAt: $0.element, keepUntil: keepUntil[$0.offset]) }
}

func kept(_ decisions: [RetentionDecision]) -> [String] { decisions.filter(\.isKept).map(\.id) }

/// The retention policy's ranges and messages, the relay tier, and `backup --keep-until`.
@Suite struct RetentionPolicyTests {
    @Test func namesOfTheSettings() {
        #expect(RetentionPolicy.Setting.vaultMonthly.key == "vault_monthly")
        #expect(RetentionPolicy.Setting.relayDays.flag == "--relay-days")
        #expect(RetentionPolicy.Setting.allCases.filter(\.isVaultTier).count == 4)
    }

    /// MARS's ranges, both ends of each; one past either end is refused with the setting, value and range.
    @Test func rangesAreMARSsAndBothEndsAreAccepted() throws {
        let ranges: [(RetentionPolicy.Setting, ClosedRange<Int>, String)] = [
            (.relayDays, 1...9999, "days"), (.relayLast, 1...9999, "recovery points"), (.vaultDaily, 7...9999, "days"),
            (.vaultWeekly, 4...5163, "weeks"), (.vaultMonthly, 3...1188, "months"), (.vaultYearly, 1...99, "years"),
        ]
        for (setting, range, unit) in ranges {
            #expect(setting.range == range)
            for ok in [range.lowerBound, range.upperBound] {
                var p = RetentionPolicy()
                p[setting] = ok
                try p.validate()
            }
            for bad in [range.lowerBound - 1, range.upperBound + 1] {
                var p = RetentionPolicy()
                p[setting] = bad
                let e = #expect(throws: OutpostError.self) { try p.validate() }
                #expect(e?.message == "\(setting.flag) must be \(range.lowerBound) to \(range.upperBound) \(unit), not \(bad)")
                #expect(e?.exitCode == .usage)
                let k = #expect(throws: OutpostError.self) { try p.validate(naming: .keys) }
                #expect(k?.message.hasPrefix("\(setting.key) must be") == true, "relay.toml names its keys")
            }
        }
    }

    @Test func theVaultKeepsAtMost9999PointsInAll() throws {
        try RetentionPolicy(vaultDaily: 9990, vaultWeekly: 4, vaultMonthly: 3, vaultYearly: 2).validate()
        let p = RetentionPolicy(relayLast: 9999, vaultDaily: 9999, vaultYearly: 1)
        let e = #expect(throws: OutpostError.self) { try p.validate() }
        #expect(e?.message.contains("at most 9999 recovery points, not 10000") == true, "\(e?.message ?? "")")
        #expect(e?.message.contains("--vault-daily 9999 + --vault-yearly 1") == true, "the relay tier does not count")
    }

    @Test func aMachinesValuesWinValueByValue() {
        let relay = RetentionPolicy(relayDays: 14, vaultDaily: 30)
        let machine = RetentionPolicy(relayDays: 7, vaultYearly: 5)
        #expect(machine.over(relay) == RetentionPolicy(relayDays: 7, vaultDaily: 30, vaultYearly: 5))
        #expect(RetentionPolicy().over(relay) == relay)
    }

    // MARK: The relay tier

    @Test func aTierWithNoRuleKeepsEverything() {
        let now = local("2026-03-15 12:00")
        let points = candidates([now.addingTimeInterval(-400 * 86400), now.addingTimeInterval(-86400)])
        let relay = RetentionPolicy(vaultDaily: 7).relayTier(points, now: now)
        #expect(relay.allSatisfy { $0.keptBy.contains(.noRule) })
        let vault = RetentionPolicy(relayDays: 1).vaultTier(points, now: now, timeZone: berlin)
        #expect(vault.allSatisfy { $0.keptBy.contains(.noRule) })
    }

    /// Younger than N days: a point exactly N × 24 h old has expired, one a second younger has not.
    @Test func relayDaysKeepsWhatIsYoungerThanNDays() {
        let now = local("2026-03-15 12:00")
        let day = 86400.0
        let points = candidates([
            now.addingTimeInterval(-20 * day), now.addingTimeInterval(-14 * day), now.addingTimeInterval(-14 * day + 1),
            now.addingTimeInterval(-day),
        ])
        let d = RetentionPolicy(relayDays: 14).relayTier(points, now: now)
        #expect(kept(d) == ["p2", "p3"])
        #expect(d[2].keptBy == [.relayDays(14)])
        #expect(d[3].keptBy.contains(.newest))
    }

    @Test func relayLastKeepsTheNewestNWhateverTheirOrder() {
        let now = local("2026-03-15 12:00")
        let points = candidates([local("2026-03-10 01:00"), local("2026-03-14 01:00"), local("2026-03-01 01:00"), local("2026-03-12 01:00")])
        let d = RetentionPolicy(relayLast: 2).relayTier(points, now: now)
        #expect(kept(d) == ["p1", "p3"])
        #expect(d[1].keptBy == [.newest, .relayLast(2)])
    }

    /// A point kept by any rule is kept: days and last together keep the union.
    @Test func eitherRelayRuleKeepsAPoint() {
        let now = local("2026-03-15 12:00")
        let points = candidates([local("2026-01-01 00:00"), local("2026-02-01 00:00"), local("2026-03-14 00:00"), local("2026-03-15 00:00")])
        #expect(kept(RetentionPolicy(relayDays: 7, relayLast: 3).relayTier(points, now: now)) == ["p1", "p2", "p3"])
        #expect(kept(RetentionPolicy(relayDays: 7, relayLast: 1).relayTier(points, now: now)) == ["p2", "p3"])
    }

    /// The newest point always stays, even when every rule lets it go (a machine that stopped backing up).
    @Test func theNewestPointAlwaysStays() {
        let now = local("2026-03-15 12:00")
        let points = candidates([local("2025-01-01 00:00"), local("2025-02-01 00:00")])
        let d = RetentionPolicy(relayDays: 1).relayTier(points, now: now)
        #expect(kept(d) == ["p1"])
        #expect(d[1].keptBy == [.newest])
    }

    /// keep-until still ahead keeps a point on both tiers; one that has passed keeps nothing.
    @Test func keepUntilOutlivesThePolicyOnBothTiers() {
        let now = local("2026-03-15 12:00")
        let until = local("2026-06-01 00:00")
        let points = candidates(
            [local("2025-01-01 00:00"), local("2025-01-02 00:00"), local("2026-03-15 11:00")],
            keepUntil: [0: until, 1: local("2026-03-15 11:59")])
        let policy = RetentionPolicy(relayLast: 1, vaultDaily: 7)
        let relay = policy.relayTier(points, now: now)
        #expect(kept(relay) == ["p0", "p2"])
        #expect(relay[0].keptBy == [.keepUntil(until)])
        #expect(kept(policy.vaultTier(points, now: now, timeZone: berlin)) == ["p0", "p2"])
        #expect(RetentionReason.keepUntil(until).description.hasPrefix("keep-until 2026-05-31T22:00:00"))
    }

    // MARK: backup --keep-until

    /// YYYY-MM-DD is kept through that whole day, local time: until the next day starts.
    @Test func keepUntilIsTheEndOfThatDayLocalTime() throws {
        let now = local("2026-03-15 12:00")
        #expect(try RetentionPolicy.keepUntil("2026-12-24", now: now, timeZone: berlin) == local("2026-12-25 00:00"))
        let utc = TimeZone(identifier: "UTC")!
        #expect(try RetentionPolicy.keepUntil("2026-12-24", now: now, timeZone: utc) == local("2026-12-25 00:00", utc))
        // Today is allowed (the day is not over); a leap day exists in 2028.
        #expect(try RetentionPolicy.keepUntil("2026-03-15", now: now, timeZone: berlin) == local("2026-03-16 00:00"))
        #expect(try RetentionPolicy.keepUntil("2028-02-29", now: now, timeZone: berlin) == local("2028-03-01 00:00"))
    }

    @Test func keepUntilInThePastIsRefusedWithTheReason() {
        let now = local("2026-03-15 12:00")
        let e = #expect(throws: OutpostError.self) { try RetentionPolicy.keepUntil("2026-03-14", now: now, timeZone: berlin) }
        #expect(e?.message.contains("--keep-until 2026-03-14 is in the past") == true, "\(e?.message ?? "")")
        #expect(e?.exitCode == .usage)
    }

    @Test(arguments: ["", "tomorrow", "24.12.2026", "2026-2-01", "2026-02-30", "2027-13-01", "2026-12-24T10:00", "20261224", "２０２６-12-24"])
    func keepUntilTakesOnlyARealDate(_ text: String) {
        let e = #expect(throws: OutpostError.self) { try RetentionPolicy.keepUntil(text, now: local("2026-03-15 12:00"), timeZone: berlin) }
        #expect(e?.message.contains("--keep-until takes a date as YYYY-MM-DD") == true, "\(text): \(e?.message ?? "")")
    }

    /// keepUntil is optional in the record: left out when unset (old records keep their bytes and ids), and a
    /// record without it (written before retention) decodes with none.
    @Test func keepUntilIsOptionalInTheRecord() throws {
        var point = RecoveryPoint(
            machine: "m", hostname: "h", paths: ["/"], startedAt: local("2026-03-15 11:00"), finishedAt: local("2026-03-15 11:01"),
            rootTree: BlobID.hash(Array("root".utf8)), parent: nil, summary: BackupSummary())
        let plain = String(decoding: point.encoded(), as: UTF8.self)
        #expect(!plain.contains("keepUntil"))
        #expect(try RecoveryPoint.decode(point.encoded(), what: "p").keepUntil == nil)
        point.keepUntil = local("2026-12-25 00:00")
        let text = String(decoding: point.encoded(), as: UTF8.self)
        #expect(text.contains(#""keepUntil":"2026-12-24T23:00:00.000Z""#), "\(text)")
        #expect(try RecoveryPoint.decode(point.encoded(), what: "p") == point)
    }
}
