import Foundation
import Logging
import OutpostCore
import OutpostStore
import Synchronization
import Testing

@testable import OutpostRelay

/// Retention policies: relay.toml's `[retention]`, the overrides kept in the index and where each value comes
/// from, and the daily prune of `relay serve`.
@Suite struct RetentionSettingsTests {
    func load(_ text: String) throws -> RelayConfiguration {
        let path = NSTemporaryDirectory() + "/outpost-retention-\(UUID().uuidString.prefix(8)).toml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try RelayConfiguration.load(path: path)
    }

    @Test func relayTomlTakesARetentionTable() throws {
        let c = try load("listen = \"127.0.0.1:9000\"\n[retention]\nrelay_days = 14\nvault_daily = 30\nvault_yearly = 7\nprune_time = \"01:30\"\n")
        #expect(c.retention == RetentionPolicy(relayDays: 14, vaultDaily: 30, vaultYearly: 7))
        #expect(c.pruneTime == "01:30")
        #expect(try load("").retention.isEmpty, "no table: no rule, nothing is pruned")
        // The sample, with its [retention] line and values uncommented.
        let sample = RelayConfiguration.sample.replacingOccurrences(of: "# [retention]", with: "[retention]")
            .replacingOccurrences(of: "# relay_days = 14", with: "relay_days = 14")
        #expect(try load(sample).retention == RetentionPolicy(relayDays: 14))
    }

    /// Refused at startup with the same message as `outpost relay retention`, naming the key.
    @Test func relayTomlValuesOutOfRangeAreRefused() throws {
        let e = #expect(throws: RelayError.self) { try self.load("[retention]\nvault_daily = 3\n") }
        #expect(e?.message.hasSuffix("[retention] vault_daily must be 7 to 9999 days, not 3") == true, "\(e?.message ?? "")")
        #expect(e?.exitCode == .usage)
        let t = #expect(throws: RelayError.self) { try self.load("[retention]\nprune_time = \"25:00\"\n") }
        #expect(t?.message.contains("prune_time must be a time of day") == true)
        let sum = #expect(throws: RelayError.self) { try self.load("[retention]\nvault_daily = 9999\nvault_weekly = 4\n") }
        #expect(sum?.message.contains("at most 9999 recovery points, not 10003") == true)
    }

    /// A key appended below the table (as operators append `proxy = …`) belongs to it: refused, not ignored.
    @Test func aKeyBelowTheRetentionTableIsRefusedNotIgnored() throws {
        let e = #expect(throws: RelayError.self) { try self.load("[retention]\nrelay_days = 14\nproxy = \"http://p:3128\"\n") }
        #expect(e?.message.contains("move proxy above that line") == true, "\(e?.message ?? "")")
    }

    func withSettings(_ body: (RetentionSettings, PruneFixture) throws -> Void) throws {
        let f = try PruneFixture()
        try f.point("web1", daysAgo: 1)
        try f.point("web2", daysAgo: 1)
        try body(RetentionSettings(store: f.store), f)
    }

    /// machine → relay default (index) → relay.toml, value by value, each with its source.
    @Test func eachValueComesFromTheMostSpecificLevel() throws {
        try withSettings { settings, _ in
            let file = RetentionPolicy(relayDays: 14, vaultDaily: 10)
            try settings.set(RetentionPolicy(vaultDaily: 30), machine: nil, clear: false, file: file)
            try settings.set(RetentionPolicy(relayDays: 7), machine: "web1", clear: false, file: file)
            let web1 = try settings.effective(machine: "web1", file: file)
            #expect(web1.policy == RetentionPolicy(relayDays: 7, vaultDaily: 30))
            #expect(
                web1.source(.relayDays) == .machine && web1.source(.vaultDaily) == .relayDefault && web1.source(.relayLast) == RetentionSource.none)
            let web2 = try settings.effective(machine: "web2", file: file)
            #expect(web2.policy == RetentionPolicy(relayDays: 14, vaultDaily: 30) && web2.source(.relayDays) == .file)
            let all = try settings.effectiveForAll(file: file)
            #expect(all.relay.machine == nil && all.machines.map(\.machine) == ["web1", "web2"])
        }
    }

    /// Values not given keep what was set; --clear drops them first.
    @Test func setKeepsEarlierValuesUnlessCleared() throws {
        try withSettings { settings, _ in
            try settings.set(RetentionPolicy(relayDays: 7), machine: "web1", clear: false, file: RetentionPolicy())
            try settings.set(RetentionPolicy(relayLast: 3), machine: "web1", clear: false, file: RetentionPolicy())
            #expect(try settings.stored(machine: "web1") == RetentionPolicy(relayDays: 7, relayLast: 3))
            try settings.set(RetentionPolicy(vaultWeekly: 4), machine: "web1", clear: true, file: RetentionPolicy())
            #expect(try settings.stored(machine: "web1") == RetentionPolicy(vaultWeekly: 4))
            try settings.set(RetentionPolicy(), machine: "web1", clear: true, file: RetentionPolicy())
            #expect(try settings.stored(machine: "web1").isEmpty)
        }
    }

    /// An unknown machine (14), a value out of range (64), and values that add up past 9999 vault points across
    /// levels are refused, and nothing is changed.
    @Test func refusalsChangeNothing() throws {
        try withSettings { settings, _ in
            let unknown = #expect(throws: OutpostError.self) {
                try settings.set(RetentionPolicy(relayLast: 2), machine: "nobody", clear: false, file: RetentionPolicy())
            }
            #expect(unknown?.exitCode == .notFound && unknown?.message.contains("no machine named nobody") == true)
            let range = #expect(throws: OutpostError.self) {
                try settings.set(RetentionPolicy(vaultYearly: 100), machine: "web1", clear: false, file: RetentionPolicy())
            }
            #expect(range?.exitCode == .usage && range?.message == "--vault-yearly must be 1 to 99 years, not 100")
            try settings.set(RetentionPolicy(vaultDaily: 9990), machine: "web1", clear: false, file: RetentionPolicy())
            let sum = #expect(throws: OutpostError.self) {
                try settings.set(RetentionPolicy(vaultWeekly: 10), machine: nil, clear: false, file: RetentionPolicy())
            }
            #expect(sum?.message.contains("in the policy of machine web1; nothing was changed") == true, "\(sum?.message ?? "")")
            #expect(try settings.stored(machine: nil).isEmpty)
            #expect(try settings.stored(machine: "web1") == RetentionPolicy(vaultDaily: 9990))
        }
    }

    // MARK: The daily prune of `relay serve`

    @Test func theNextPruneTimeIsLocalAndDaily() {
        let berlin = TimeZone(identifier: "Europe/Berlin")!
        let at0259 = Date(timeIntervalSince1970: 1_773_539_940)  // 2026-03-15 01:59 UTC = 02:59 in Berlin
        #expect(PruneService.seconds(until: 180, after: at0259, in: berlin) == 60)
        #expect(PruneService.seconds(until: 180, after: at0259.addingTimeInterval(60), in: berlin) == 86400, "just run: tomorrow")
        // 2026-03-28 03:30 in Berlin (02:30 UTC) to 03:00 on the 29th, after the clocks went forward: 22.5 h.
        #expect(PruneService.seconds(until: 180, after: Date(timeIntervalSince1970: 1_774_665_000), in: berlin) == 81000)
    }

    /// A day in no time: the injected wait moves the injected clock. Each day prunes once at prune_time, a failed
    /// prune is logged and the next day prunes again.
    /// The injected clock, and what the service asked of it.
    final class FakeDays: Sendable {
        let clock = Mutex(Date(timeIntervalSince1970: 1_773_576_000))  // 2026-03-15 12:00 UTC
        let waits = Mutex<[Double]>([])
        let runs = Mutex<[Date]>([])
    }

    @Test func servePrunesOnceADayAtPruneTime() async throws {
        let days = FakeDays()
        let service = PruneService(
            at: 3 * 60, timeZone: TimeZone(identifier: "UTC")!, clock: { days.clock.withLock { $0 } },
            wait: { s in
                days.waits.withLock { $0.append(s) }
                days.clock.withLock { $0.addTimeInterval(s) }
            },
            logger: Logger(label: "prune-test")
        ) { now in
            let first = days.runs.withLock {
                $0.append(now); return $0.count == 1
            }
            days.clock.withLock { $0.addTimeInterval(60) }  // a prune takes a minute
            if first { throw OutpostError(.io, "the index is busy") }
            return PrunePlan(now: now, vaultRegistered: false, force: false, machines: [])
        }
        try await service.loop(days: 3)
        let day0 = Date(timeIntervalSince1970: 1_773_630_000)  // 2026-03-16 03:00 UTC
        let ran: [Date] = days.runs.withLock { $0 }
        #expect(ran == [day0, day0.addingTimeInterval(86400), day0.addingTimeInterval(2 * 86400)])
        let waited: [Double] = days.waits.withLock { $0 }
        let expected: [Double] = [15 * 3600, 86400 - 60, 86400 - 60]
        #expect(waited == expected)
    }
}
