import Foundation
import GRDB
import Logging
import OutpostCore
import OutpostStore
import Testing

@testable import OutpostRelay

/// The relay's history retention (`[jobs] keep_days`): cleared alerts go with their deliveries, open ones stay;
/// a job an open alert names or whose point the vault still holds stays; `relay serve` applies it at most once
/// an hour; and the setting is range-checked like its neighbours.
@Suite struct HistoryRetentionTests {
    /// 2026-03-15 12:00 UTC.
    static let now = Date(timeIntervalSince1970: 1_773_576_000)
    static let day: TimeInterval = 86400
    static let all = Set(Alert.Kind.allCases).subtracting([.test])

    func ago(_ days: Double) -> Date { Self.now - days * Self.day }

    @discardableResult
    func rec(_ f: AgentsFixture, _ machine: String, _ state: Job.State, daysAgo: Double) throws -> Int64 {
        try JobLog(store: f.store).record(
            .backup, machine: machine, state: state, startedAt: ago(daysAgo), endedAt: ago(daysAgo) + 600, bytes: 0, files: 0, detail: nil)
    }

    @Test func alertsClearedLongAgoGoWithTheirDeliveriesOpenOnesStay() throws {
        let f = try AgentsFixture()
        let book = AlertBook(store: f.store)
        let failed = AlertCondition(.jobFailed, "backup:pc1", "the backup of pc1 failed")
        let disk = AlertCondition(.diskLow, "store", "the relay's store is low")
        let lag = AlertCondition(.forwardingLag, "vault", "points wait")
        let opened = try book.reconcile([failed, disk, lag], kinds: Self.all, channels: ["webhook"], now: ago(500))
        let id = Dictionary(uniqueKeysWithValues: opened.opened.map { ($0.kind, $0.id) })
        _ = try book.reconcile([disk, lag], kinds: Self.all, channels: ["webhook"], now: ago(450))
        for d in try book.due(now: ago(449)) where d.alert == id[.jobFailed] { try book.delivered(d.id, now: ago(449)) }
        // The lag cleared as long ago, but its clearing is still being delivered: it stays until that ends.
        _ = try book.reconcile([disk], kinds: Self.all, channels: ["webhook"], now: ago(450))
        let recent = try book.reconcile([disk, failed], kinds: Self.all, channels: [], now: ago(20))
        _ = try book.reconcile([disk], kinds: Self.all, channels: [], now: ago(10))
        let test = try book.test(channels: [], now: ago(401))

        let r = try HistoryRetention(store: f.store).apply(keepDays: 400, now: Self.now)
        #expect(r == HistoryRetention.Report(keepDays: 400, jobs: 0, alerts: 2), "the cleared job-failed alert and the test")
        #expect(try book.alert(try #require(id[.jobFailed])) == nil && book.alert(test.id) == nil)
        #expect(try book.deliveries(alert: try #require(id[.jobFailed])).isEmpty, "no delivery is left naming a deleted alert")
        #expect(try book.open().map(\.id) == [id[.diskLow]], "an open alert stays, however old")
        #expect(try book.alert(try #require(id[.forwardingLag])) != nil, "a delivery still pending keeps its alert")
        #expect(try book.alert(try #require(recent.opened.first?.id)) != nil, "cleared within keep_days")
        let orphans = try f.store.index.read("counting") { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM alert_deliveries WHERE alert NOT IN (SELECT id FROM alerts)")
        }
        #expect(orphans == 0)
    }

    @Test func aJobAnOpenAlertNamesOrWhosePointTheVaultHoldsStays() throws {
        let f = try AgentsFixture()
        let log = JobLog(store: f.store)
        let named = try rec(f, "pc1", .failed, daysAgo: 600)
        let unnamed = try rec(f, "pc1", .failed, daysAgo: 580)
        // A point pruned from the relay that the vault keeps, and the job that made it.
        let point = BlobID.hash(Array("a point".utf8))
        let held = try log.begin(.backup, machine: "pc1", trigger: "manual", claiming: nil, deadline: Self.now, now: ago(550))
        #expect(try log.attach(point: point.hex, to: held, machine: "pc1"))
        try log.end(held, machine: "pc1", .failed, bytes: 0, files: 0, detail: nil, failedFiles: [], now: ago(550) + 60)
        try f.store.index.write("recording a pruned point") { db in
            try db.execute(
                sql: "INSERT INTO pruned_points (point_id, machine, finished_at, record, pruned_at) VALUES (?, 'pc1', ?, x'00', ?)",
                arguments: [point.data, ago(550).timeIntervalSince1970, ago(500).timeIntervalSince1970])
        }
        let latest = try rec(f, "pc1", .completed, daysAgo: 1)
        // Opened when job `named` was the latest run; the next check clears it, until then it names the job.
        _ = try AlertBook(store: f.store).reconcile(
            [AlertCondition(.jobFailed, "backup:pc1", "the backup of pc1 failed (job \(named)): disk full")], kinds: Self.all, channels: [],
            now: ago(599))

        let r = try HistoryRetention(store: f.store).apply(keepDays: 400, now: Self.now)
        #expect(r.jobs == 1)
        #expect(Set(try log.list().map(\.id)) == [named, held, latest])
        #expect(!(try log.list().map(\.id)).contains(unnamed))
    }

    @Test func relayServeAppliesItAtMostOnceAnHour() throws {
        let f = try AgentsFixture()
        var jobs = JobSettings()
        jobs.keepDays = 30
        let m = AlertMonitor(
            store: f.store, settings: AlertSettings(), jobs: jobs, clock: .system, logger: Logger(label: "history-test"), dispatcher: nil)
        let log = JobLog(store: f.store)
        try rec(f, "pc1", .failed, daysAgo: 40)
        try rec(f, "pc1", .completed, daysAgo: 1)
        m.applyHistoryRetention(now: Self.now)
        #expect(try log.list().count == 1, "older than keep_days 30: gone at the first round")
        try rec(f, "pc1", .failed, daysAgo: 41)
        m.applyHistoryRetention(now: Self.now + 1800)
        #expect(try log.list().count == 2, "not again within the hour")
        m.applyHistoryRetention(now: Self.now + 3600)
        #expect(try log.list().count == 1, "again an hour later")
    }

    // MARK: The setting

    func load(_ text: String) throws -> RelayConfiguration {
        let path = NSTemporaryDirectory() + "/outpost-history-\(UUID().uuidString.prefix(8)).toml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try RelayConfiguration.load(path: path)
    }

    @Test func keepDaysIsReadWithItsDefaultInTheSample() throws {
        #expect(try load("").jobs.keepDays == 400)
        #expect(try load("[jobs]\nkeep_days = 30\n").jobs.keepDays == 30)
        #expect(try load("[jobs]\nkeep_days = 3650\n").jobs.keepDays == 3650)
        let sample = RelayConfiguration.sample.replacingOccurrences(of: "# [jobs]", with: "[jobs]")
            .replacingOccurrences(of: "# keep_days =", with: "keep_days =")
        #expect(sample.contains("\nkeep_days = 400\n"))
        #expect(try load(sample).jobs == JobSettings(), "the sample holds the default")
    }

    @Test func keepDaysOutOfRangeIsRefusedNamingTheKey() {
        for (value, range) in [(29, "30 to 3650 days"), (3651, "30 to 3650 days"), (0, "30 to 3650 days")] {
            let e = #expect(throws: RelayError.self) { try self.load("[jobs]\nkeep_days = \(value)\n") }
            #expect(e?.code == .config && e?.exitCode == .usage, "exit 64")
            #expect(e?.message.hasSuffix("[jobs] keep_days must be \(range), not \(value)") == true, "\(e?.message ?? "accepted")")
        }
    }
}
