import Foundation
import GRDB
import OutpostCore
import OutpostStore

/// An alert of the relay (docs/alerts.md): open while its condition holds, cleared when it stops.
public struct Alert: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        /// A job's latest run failed, or finished with warnings.
        case jobFailed = "job-failed", jobWarnings = "job-warnings"
        /// A machine has no good backup since a planned time plus the grace period: its RPO is broken.
        case missedBackup = "missed-backup"
        case forwardingLag = "forwarding-lag"
        case vaultUnreachable = "vault-unreachable"
        /// `relay check` or `verify-vault` found damage.
        case damage
        case diskLow = "disk-low"
        /// `relay alerts --test`: opened and cleared at once.
        case test
    }

    public var id: Int64
    public var kind: Kind
    /// What it is about: a machine, `backup:pc1`, `store`, `vault`.
    public var subject: String
    public var message: String
    public var openedAt: Date
    public var clearedAt: Date?
}

/// One condition the monitor found holding now.
public struct AlertCondition: Sendable, Equatable {
    public var kind: Alert.Kind
    public var subject: String
    public var message: String
    public init(_ kind: Alert.Kind, _ subject: String, _ message: String) {
        self.kind = kind; self.subject = subject; self.message = message
    }
}

/// A notification of an alert's opening or clearing to one channel, retried until delivered or out of attempts.
public struct AlertDelivery: Sendable, Codable, Equatable {
    public enum State: String, Sendable, Codable { case pending, delivered, failed }
    public var id: Int64
    public var alert: Int64
    /// `opened`, `cleared` or `test`.
    public var event: String
    /// `webhook` or `email`.
    public var channel: String
    public var state: State
    public var attempts: Int
    public var nextAt: Date
    public var deliveredAt: Date?
    public var lastError: String?
}

/// The relay's alerts and their deliveries, in its index (schema v12, v16). An alert opens once per condition and
/// clears once; each opening and clearing is queued once per configured channel, so a notification is sent
/// once when it opens and once when it clears, not at every check.
public struct AlertBook: Sendable {
    let index: StoreIndex

    public init(store: Store) { index = store.index }

    public static let migrations = [
        IndexMigration(
            "v12",
            sql: """
                CREATE TABLE alerts (
                    id INTEGER PRIMARY KEY,
                    kind TEXT NOT NULL,
                    subject TEXT NOT NULL,
                    message TEXT NOT NULL,
                    opened_at REAL NOT NULL,
                    cleared_at REAL
                );
                CREATE UNIQUE INDEX alerts_open ON alerts(kind, subject) WHERE cleared_at IS NULL;
                CREATE TABLE alert_deliveries (
                    id INTEGER PRIMARY KEY,
                    alert INTEGER NOT NULL REFERENCES alerts(id),
                    event TEXT NOT NULL,
                    channel TEXT NOT NULL,
                    state TEXT NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_at REAL NOT NULL,
                    delivered_at REAL,
                    last_error TEXT
                );
                CREATE INDEX alert_deliveries_pending ON alert_deliveries(next_at) WHERE state = 'pending';
                """),
        // An alert's deliveries (`deliveries(alert:)`, and history retention's check for a pending one and its
        // deletion) without a scan of every delivery ever queued.
        IndexMigration("v16", sql: "CREATE INDEX alert_deliveries_by_alert ON alert_deliveries(alert);"),
    ]

    /// What `reconcile` changed.
    public struct Changes: Sendable {
        public var opened: [Alert] = []
        public var cleared: [Alert] = []
    }

    /// Makes the open alerts of `kinds` match the conditions holding now: opens those new, clears those gone,
    /// updates the message of those still open; queues a delivery per channel for each opening and clearing.
    public func reconcile(
        _ holding: [AlertCondition], kinds: Set<Alert.Kind>, channels: [String], now: Date
    ) throws -> Changes {
        try index.write("recording alerts") { db in
            var changes = Changes()
            let open = try Row.fetchAll(db, sql: "SELECT * FROM alerts WHERE cleared_at IS NULL").map(Self.alert)
            let openByKey = Dictionary(open.map { ("\($0.kind.rawValue)\u{0}\($0.subject)", $0) }, uniquingKeysWith: { a, _ in a })
            var holdingKeys = Set<String>()
            let t = now.timeIntervalSince1970
            for c in holding where kinds.contains(c.kind) {
                let key = "\(c.kind.rawValue)\u{0}\(c.subject)"
                guard holdingKeys.insert(key).inserted else { continue }
                if let a = openByKey[key] {
                    if a.message != c.message {
                        try db.execute(sql: "UPDATE alerts SET message = ? WHERE id = ?", arguments: [c.message, a.id])
                    }
                    continue
                }
                try db.execute(
                    sql: "INSERT INTO alerts (kind, subject, message, opened_at) VALUES (?, ?, ?, ?)",
                    arguments: [c.kind.rawValue, c.subject, c.message, t])
                let alert = Alert(id: db.lastInsertedRowID, kind: c.kind, subject: c.subject, message: c.message, openedAt: now)
                try queue(db, alert: alert.id, event: "opened", channels: channels, now: now)
                changes.opened.append(alert)
            }
            for a in open where kinds.contains(a.kind) && !holdingKeys.contains("\(a.kind.rawValue)\u{0}\(a.subject)") {
                try db.execute(sql: "UPDATE alerts SET cleared_at = ? WHERE id = ?", arguments: [t, a.id])
                try queue(db, alert: a.id, event: "cleared", channels: channels, now: now)
                var cleared = a
                cleared.clearedAt = now
                changes.cleared.append(cleared)
            }
            return changes
        }
    }

    private func queue(_ db: Database, alert: Int64, event: String, channels: [String], now: Date) throws {
        for channel in channels {
            try db.execute(
                sql: "INSERT INTO alert_deliveries (alert, event, channel, state, next_at) VALUES (?, ?, ?, 'pending', ?)",
                arguments: [alert, event, channel, now.timeIntervalSince1970])
        }
    }

    /// A test notification (`relay alerts --test`): an alert opened and cleared at once, delivered to every channel.
    public func test(channels: [String], now: Date) throws -> Alert {
        try index.write("recording a test alert") { db in
            let t = now.timeIntervalSince1970
            let message = "a test of the relay's alert delivery (`outpost relay alerts --test`); nothing is wrong"
            try db.execute(
                sql: "INSERT INTO alerts (kind, subject, message, opened_at, cleared_at) VALUES ('test', 'relay', ?, ?, ?)",
                arguments: [message, t, t])
            let id = db.lastInsertedRowID
            try queue(db, alert: id, event: "test", channels: channels, now: now)
            return Alert(id: id, kind: .test, subject: "relay", message: message, openedAt: now, clearedAt: now)
        }
    }

    public func open() throws -> [Alert] {
        try index.read("reading alerts") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM alerts WHERE cleared_at IS NULL AND kind != 'test' ORDER BY opened_at").map(Self.alert)
        }
    }

    /// Alerts opened since `since` (cleared or not), newest first.
    public func history(since: Date, limit: Int = 500) throws -> [Alert] {
        try index.read("reading alerts") { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM alerts WHERE kind != 'test' AND (cleared_at IS NULL OR opened_at >= ?) ORDER BY opened_at DESC LIMIT ?",
                arguments: [since.timeIntervalSince1970, limit]
            ).map(Self.alert)
        }
    }

    public func alert(_ id: Int64) throws -> (kind: String, alert: Alert)? {
        try index.read("reading an alert") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM alerts WHERE id = ?", arguments: [id]).map { (($0["kind"] as String), Self.alert($0)) }
        }
    }

    /// Deliveries due now.
    public func due(now: Date, limit: Int = 50) throws -> [AlertDelivery] {
        try index.read("reading alert deliveries") { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM alert_deliveries WHERE state = 'pending' AND next_at <= ? ORDER BY id LIMIT ?",
                arguments: [now.timeIntervalSince1970, limit]
            ).map(Self.delivery)
        }
    }

    /// Deliveries that failed for good, or are being retried, newest first (`relay alerts` shows them).
    public func troubled(limit: Int = 50) throws -> [AlertDelivery] {
        try index.read("reading alert deliveries") { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM alert_deliveries WHERE last_error IS NOT NULL AND state != 'delivered' ORDER BY id DESC LIMIT ?",
                arguments: [limit]
            ).map(Self.delivery)
        }
    }

    public func deliveries(alert: Int64) throws -> [AlertDelivery] {
        try index.read("reading alert deliveries") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM alert_deliveries WHERE alert = ? ORDER BY id", arguments: [alert]).map(Self.delivery)
        }
    }

    public func delivered(_ id: Int64, now: Date) throws {
        try index.write("recording an alert delivery") { db in
            try db.execute(
                sql: "UPDATE alert_deliveries SET state = 'delivered', attempts = attempts + 1, delivered_at = ? WHERE id = ?",
                arguments: [now.timeIntervalSince1970, id])
        }
    }

    /// A failed attempt: retried after a backoff (30 s doubling, at most an hour), or failed for good when the
    /// error is permanent or the attempts are spent. Returns whether it failed for good.
    @discardableResult
    public func attemptFailed(_ d: AlertDelivery, error: String, permanent: Bool, maxAttempts: Int, now: Date) throws -> Bool {
        let attempts = d.attempts + 1
        let final = permanent || attempts >= maxAttempts
        let delay = min(3600, 30 * pow(2, Double(attempts - 1)))
        try index.write("recording an alert delivery") { db in
            try db.execute(
                sql: "UPDATE alert_deliveries SET state = ?, attempts = ?, next_at = ?, last_error = ? WHERE id = ?",
                arguments: [final ? "failed" : "pending", attempts, now.timeIntervalSince1970 + delay, error, d.id])
        }
        return final
    }

    // MARK: History retention

    /// The jobs open alerts name ("… (job 42)": a failed or warned job, damage found by a check); history
    /// retention keeps them while the alert is open.
    public func openJobReferences() throws -> Set<Int64> {
        let messages = try index.read("reading alerts") { db in
            try String.fetchAll(db, sql: "SELECT message FROM alerts WHERE cleared_at IS NULL")
        }
        var ids = Set<Int64>()
        for m in messages {
            for match in m.matches(of: /\(job (\d+)\)/) { if let id = Int64(match.1) { ids.insert(id) } }
        }
        return ids
    }

    /// History retention (`[jobs] keep_days`): deletes the alerts cleared before `cutoff` with their deliveries,
    /// `batchSize` alerts a transaction; an open alert, and one with a delivery still pending, stays. Returns how
    /// many alerts went.
    public func expire(clearedBefore cutoff: Date, batchSize: Int = 5000) throws -> Int {
        var deleted = 0
        while true {
            let gone = try index.write("deleting old alerts") { db -> Int in
                let ids = try Int64.fetchAll(
                    db,
                    sql: """
                        SELECT id FROM alerts WHERE cleared_at IS NOT NULL AND cleared_at < ?
                        AND NOT EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert = alerts.id AND d.state = 'pending')
                        ORDER BY id LIMIT ?
                        """, arguments: [cutoff.timeIntervalSince1970, batchSize])
                guard !ids.isEmpty else { return 0 }
                let list = ids.map(String.init).joined(separator: ",")
                try db.execute(sql: "DELETE FROM alert_deliveries WHERE alert IN (\(list))")
                try db.execute(sql: "DELETE FROM alerts WHERE id IN (\(list))")
                return ids.count
            }
            deleted += gone
            if gone < batchSize { return deleted }
        }
    }

    static func alert(_ row: Row) -> Alert {
        Alert(
            id: row["id"], kind: Alert.Kind(rawValue: row["kind"]) ?? .jobFailed, subject: row["subject"], message: row["message"],
            openedAt: Date(timeIntervalSince1970: row["opened_at"]), clearedAt: (row["cleared_at"] as Double?).map(Date.init(timeIntervalSince1970:)))
    }

    static func delivery(_ row: Row) -> AlertDelivery {
        AlertDelivery(
            id: row["id"], alert: row["alert"], event: row["event"], channel: row["channel"],
            state: AlertDelivery.State(rawValue: row["state"]) ?? .failed, attempts: row["attempts"],
            nextAt: Date(timeIntervalSince1970: row["next_at"]), deliveredAt: (row["delivered_at"] as Double?).map(Date.init(timeIntervalSince1970:)),
            lastError: row["last_error"])
    }
}
