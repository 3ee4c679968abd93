import Foundation
import Logging
import OutpostCore
import OutpostStore
import Testing

@testable import OutpostRelay

/// A relay's store with every table of issue 12 (machines, retention, groups and agents, alerts) in a scratch
/// directory, for the alert, monitor and agent-desk tests.
final class AgentsFixture: Sendable {
    let path = NSTemporaryDirectory() + "/outpost-agents-\(UUID().uuidString.prefix(8))"
    let store: Store

    init() throws {
        StoreIndex.registerMigrations(
            MachineCatalog.migrations + RetentionSettings.migrations + ProtectionGroups.migrations + AlertBook.migrations)
        store = try Store.initialize(at: path)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Machines the relay knows (added; enrolment does not matter to groups or jobs).
    func machines(_ names: String..., now: Date) throws {
        for n in names { try MachineCatalog(store: store).addMachine(n, token: "token-\(n)", expiresAt: now + 3600, now: now) }
    }

    func group(_ name: String, _ machines: [String], schedule: String = "daily 21:00", now: Date) throws {
        try ProtectionGroups(store: store).create(
            name, .init(machines: machines, paths: ["/data"], schedule: schedule), file: RetentionPolicy(), now: now)
    }
}

/// The relay's alerts: each condition opens one alert and clears it once, with one delivery per channel each
/// time; deliveries are retried with backoff and fail for good when permanent or out of attempts.
@Suite struct AlertBookTests {
    /// 2026-03-15 12:00 UTC.
    static let t0 = Date(timeIntervalSince1970: 1_773_576_000)
    static let channels = ["webhook", "email"]
    static let all = Set(Alert.Kind.allCases).subtracting([.test])

    func withBook(_ body: (AlertBook) throws -> Void) throws {
        let f = try AgentsFixture()
        try body(AlertBook(store: f.store))
    }

    func events(_ book: AlertBook, _ alert: Int64) throws -> [String] {
        try book.deliveries(alert: alert).map { "\($0.event) \($0.channel)" }
    }

    @Test func aConditionOpensOnceAndClearsOnce() throws {
        try withBook { book in
            let t = Self.t0
            let c = AlertCondition(.jobFailed, "backup:pc1", "the backup of pc1 failed")
            let first = try book.reconcile([c], kinds: Self.all, channels: Self.channels, now: t)
            #expect(first.opened.count == 1 && first.cleared.isEmpty)
            let id = try #require(first.opened.first?.id)
            #expect(try events(book, id) == ["opened webhook", "opened email"])

            let again = try book.reconcile([c], kinds: Self.all, channels: Self.channels, now: t + 60)
            #expect(again.opened.isEmpty && again.cleared.isEmpty, "still holding: nothing new, nothing sent")
            #expect(try book.open().map(\.id) == [id])
            #expect(try events(book, id).count == 2)

            let gone = try book.reconcile([], kinds: Self.all, channels: Self.channels, now: t + 120)
            #expect(gone.cleared.map(\.id) == [id] && gone.cleared.first?.clearedAt == t + 120)
            #expect(try book.open().isEmpty)
            #expect(try events(book, id) == ["opened webhook", "opened email", "cleared webhook", "cleared email"])

            let still = try book.reconcile([], kinds: Self.all, channels: Self.channels, now: t + 180)
            #expect(still.cleared.isEmpty, "cleared once")
            #expect(try events(book, id).count == 4)

            let back = try book.reconcile([c], kinds: Self.all, channels: Self.channels, now: t + 240)
            #expect(back.opened.count == 1 && back.opened.first?.id != id, "holding again: a new alert")
        }
    }

    @Test func aChangedMessageUpdatesTheOpenAlertWithoutANewDelivery() throws {
        try withBook { book in
            let t = Self.t0
            let opened = try book.reconcile(
                [AlertCondition(.missedBackup, "pc1", "missed 21:00")], kinds: Self.all, channels: Self.channels, now: t)
            let id = try #require(opened.opened.first?.id)
            let changes = try book.reconcile(
                [AlertCondition(.missedBackup, "pc1", "missed 21:00 and 22:00")], kinds: Self.all, channels: Self.channels, now: t + 60)
            #expect(changes.opened.isEmpty && changes.cleared.isEmpty)
            let open = try book.open()
            #expect(open.map(\.id) == [id] && open.first?.message == "missed 21:00 and 22:00" && open.first?.openedAt == t)
            #expect(try events(book, id).count == 2)
        }
    }

    @Test func onlyTheGivenKindsAreOpenedOrCleared() throws {
        try withBook { book in
            let t = Self.t0
            let lag = AlertCondition(.forwardingLag, "vault", "points wait")
            let failed = AlertCondition(.jobFailed, "prune", "the prune failed")
            _ = try book.reconcile([lag, failed], kinds: Self.all, channels: [], now: t)
            let changes = try book.reconcile([], kinds: [.jobFailed], channels: [], now: t + 60)
            #expect(changes.cleared.map(\.kind) == [.jobFailed])
            #expect(try book.open().map(\.kind) == [.forwardingLag], "a kind not reconciled is left as it is")
            let ignored = try book.reconcile([AlertCondition(.diskLow, "store", "full")], kinds: [.jobFailed], channels: [], now: t + 120)
            #expect(ignored.opened.isEmpty)
        }
    }

    @Test func theSameConditionTwiceOpensOneAlert() throws {
        try withBook { book in
            let c = AlertCondition(.damage, "check", "damage")
            let changes = try book.reconcile([c, c], kinds: Self.all, channels: ["email"], now: Self.t0)
            #expect(changes.opened.count == 1)
            #expect(try book.due(now: Self.t0).count == 1)
        }
    }

    @Test func aTestAlertIsClearedAtOnceAndSentToEachChannel() throws {
        try withBook { book in
            let a = try book.test(channels: Self.channels, now: Self.t0)
            #expect(a.kind == .test && a.openedAt == Self.t0 && a.clearedAt == Self.t0)
            #expect(try events(book, a.id) == ["test webhook", "test email"])
            #expect(try book.open().isEmpty && book.history(since: .distantPast).isEmpty, "a test is not an alert of the relay")
            #expect(try book.reconcile([], kinds: Self.all, channels: Self.channels, now: Self.t0 + 1).cleared.isEmpty)
        }
    }

    @Test func historyListsAlertsOpenedSinceAndEveryOpenOneNewestFirst() throws {
        try withBook { book in
            let t = Self.t0
            let a = AlertCondition(.jobFailed, "backup:pc1", "a")
            let b = AlertCondition(.jobFailed, "backup:pc2", "b")
            let c = AlertCondition(.jobFailed, "backup:pc3", "c")
            _ = try book.reconcile([a], kinds: Self.all, channels: [], now: t)
            _ = try book.reconcile([b], kinds: Self.all, channels: [], now: t + 100)  // clears a
            _ = try book.reconcile([b, c], kinds: Self.all, channels: [], now: t + 200)
            _ = try book.reconcile([b], kinds: Self.all, channels: [], now: t + 300)  // clears c
            #expect(try book.history(since: t + 150).map(\.subject) == ["backup:pc3", "backup:pc2"])
            #expect(try book.history(since: t + 250).map(\.subject) == ["backup:pc2"], "open, though opened before")
            #expect(try book.history(since: t - 1).map(\.subject) == ["backup:pc3", "backup:pc2", "backup:pc1"])
        }
    }

    // MARK: Deliveries

    @Test func aDeliveryIsDueFromItsTimeUntilDelivered() throws {
        try withBook { book in
            let t = Self.t0
            _ = try book.reconcile([AlertCondition(.diskLow, "store", "low")], kinds: Self.all, channels: Self.channels, now: t)
            #expect(try book.due(now: t - 1).isEmpty)
            let due = try book.due(now: t)
            #expect(due.map(\.channel) == Self.channels && due.allSatisfy { $0.state == .pending && $0.attempts == 0 })
            try book.delivered(due[0].id, now: t + 1)
            #expect(try book.due(now: t + 3600).map(\.id) == [due[1].id])
            let done = try book.deliveries(alert: due[0].alert)[0]
            #expect(done.state == .delivered && done.attempts == 1 && done.deliveredAt == t + 1)
        }
    }

    @Test func aFailedAttemptIsRetriedAfter30SecondsDoublingUpToAnHour() throws {
        try withBook { book in
            let t = Self.t0
            _ = try book.reconcile([AlertCondition(.diskLow, "store", "low")], kinds: Self.all, channels: ["webhook"], now: t)
            var delays: [TimeInterval] = []
            var now = t
            for _ in 0..<10 {
                let d = try #require(try book.due(now: now).first)
                #expect(try book.attemptFailed(d, error: "connection refused", permanent: false, maxAttempts: 100, now: now) == false)
                let next = try #require(try book.deliveries(alert: d.alert).first)
                #expect(try book.due(now: next.nextAt - 1).isEmpty, "not before its time")
                delays.append(next.nextAt.timeIntervalSince(now))
                now = next.nextAt
            }
            #expect(delays == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600])
            let troubled = try book.troubled()
            #expect(troubled.count == 1 && troubled.first?.state == .pending && troubled.first?.attempts == 10)
            #expect(troubled.first?.lastError == "connection refused")
        }
    }

    @Test func aDeliveryFailsForGoodWhenPermanentOrOutOfAttempts() throws {
        try withBook { book in
            let t = Self.t0
            _ = try book.reconcile([AlertCondition(.diskLow, "store", "low")], kinds: Self.all, channels: Self.channels, now: t)
            let due = try book.due(now: t)
            let (hook, mail) = (due[0], due[1])
            #expect(try book.attemptFailed(hook, error: "401 Unauthorized", permanent: true, maxAttempts: 8, now: t))
            #expect(try book.attemptFailed(mail, error: "timed out", permanent: false, maxAttempts: 2, now: t) == false)
            let retried = try #require(try book.due(now: t + 30).first)
            #expect(retried.id == mail.id && retried.attempts == 1)
            #expect(try book.attemptFailed(retried, error: "timed out again", permanent: false, maxAttempts: 2, now: t + 30))
            #expect(try book.due(now: t + 86400).isEmpty, "failed for good is not retried")
            let troubled = try book.troubled()
            #expect(troubled.map(\.id) == [mail.id, hook.id] && troubled.allSatisfy { $0.state == .failed })
            #expect(troubled.map(\.lastError) == ["timed out again", "401 Unauthorized"])
        }
    }

    @Test func aDeliveryThatSucceedsAfterAFailureIsNoLongerTroubled() throws {
        try withBook { book in
            let t = Self.t0
            _ = try book.reconcile([AlertCondition(.diskLow, "store", "low")], kinds: Self.all, channels: ["email"], now: t)
            let d = try #require(try book.due(now: t).first)
            try book.attemptFailed(d, error: "timed out", permanent: false, maxAttempts: 8, now: t)
            #expect(try book.troubled().count == 1)
            try book.delivered(d.id, now: t + 30)
            #expect(try book.troubled().isEmpty)
            #expect(try book.deliveries(alert: d.alert).first?.attempts == 2)
        }
    }
}
