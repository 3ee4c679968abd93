import Foundation
import OutpostCore
import TOMLKit

/// relay.toml's `[jobs]` table: how long the relay waits on agents' jobs, and how long it keeps their history.
public struct JobSettings: Sendable, Equatable {
    /// A backup still running this long after it started is failed.
    public var backupDeadlineHours = 12
    /// A running backup whose agent said nothing for this long is failed (agents report every 30 s).
    public var agentSilenceMinutes = 10
    /// A `relay backup-now` no agent took within this long is failed.
    public var backupNowMinutes = 60
    /// Jobs ended and alerts cleared longer ago than this are deleted (`HistoryRetention`), so that the index
    /// does not grow by every job forever.
    public var keepDays = 400

    public init() {}

    struct File: Codable {
        var backup_deadline_hours: Int?
        var agent_silence_minutes: Int?
        var backup_now_minutes: Int?
        var keep_days: Int?
        static let keys = ["backup_deadline_hours", "agent_silence_minutes", "backup_now_minutes", "keep_days"]
    }
}

/// relay.toml's `[alerts]` table (docs/alerts.md): what the relay watches, and where it sends an alert when one
/// opens and when it clears (a webhook, email, both or neither; `relay alerts` lists them in any case).
public struct AlertSettings: Sendable, Equatable {
    public var checkIntervalSeconds = 60
    /// A machine's backup counts as missed this long after its planned time.
    public var missedGraceMinutes = 60
    /// Forwarding lags when the oldest point not yet in the vault was committed this long ago.
    public var forwardingLagHours = 24
    /// The relay's disk is low below this share of free space.
    public var minFreePercent = 10
    /// Attempts per delivery (retried with backoff: 30 s, 1 min, 2 min … at most 1 h apart).
    public var deliveryAttempts = 8

    public var webhookURL: String?
    public var webhookSecretFile: String?
    public var webhookCAFile: String?

    public var smtpHost: String?
    public var smtpPort = 587
    public var smtpSecurity = "starttls"
    public var smtpUser: String?
    public var smtpPasswordFile: String?
    public var smtpFrom: String?
    public var smtpTo: [String] = []
    public var smtpCAFile: String?

    public init() {}

    struct File: Codable {
        var check_interval_seconds: Int?
        var missed_grace_minutes: Int?
        var forwarding_lag_hours: Int?
        var min_free_percent: Int?
        var delivery_attempts: Int?
        var webhook_url: String?
        var webhook_secret_file: String?
        var webhook_ca_file: String?
        var smtp_host: String?
        var smtp_port: Int?
        var smtp_security: String?
        var smtp_user: String?
        var smtp_password_file: String?
        var smtp_from: String?
        var smtp_to: [String]?
        var smtp_ca_file: String?
        static let keys = [
            "check_interval_seconds", "missed_grace_minutes", "forwarding_lag_hours", "min_free_percent", "delivery_attempts", "webhook_url",
            "webhook_secret_file", "webhook_ca_file", "smtp_host", "smtp_port", "smtp_security", "smtp_user", "smtp_password_file",
            "smtp_from", "smtp_to", "smtp_ca_file",
        ]
    }

    /// Reads the `[alerts]` and `[jobs]` tables of relay.toml's text; every mistake names the key and the fix.
    static func load(_ text: String, table: TOMLTable?, path: String) throws -> (AlertSettings, JobSettings) {
        struct Tables: Codable {
            var alerts: File?
            var jobs: JobSettings.File?
        }
        try RelayConfiguration.refuseStrayKeys(table, [("alerts", File.keys), ("jobs", JobSettings.File.keys)], path: path)
        let tables: Tables
        do { tables = try TOMLDecoder().decode(Tables.self, from: text) } catch {
            throw RelayError(.config, "\(path): [alerts] or [jobs] is not of the expected shape: \(error)")
        }
        func ranged(_ v: Int?, _ key: String, _ range: ClosedRange<Int>, _ unit: String) throws -> Int? {
            guard let v else { return nil }
            guard range.contains(v) else {
                throw RelayError(.config, "\(path): \(key) must be \(range.lowerBound) to \(range.upperBound) \(unit), not \(v)")
            }
            return v
        }
        var jobs = JobSettings()
        if let j = tables.jobs {
            if let v = try ranged(j.backup_deadline_hours, "[jobs] backup_deadline_hours", 1...168, "hours") { jobs.backupDeadlineHours = v }
            if let v = try ranged(j.agent_silence_minutes, "[jobs] agent_silence_minutes", 1...1440, "minutes") { jobs.agentSilenceMinutes = v }
            if let v = try ranged(j.backup_now_minutes, "[jobs] backup_now_minutes", 1...1440, "minutes") { jobs.backupNowMinutes = v }
            if let v = try ranged(j.keep_days, "[jobs] keep_days", 30...3650, "days") { jobs.keepDays = v }
        }
        var a = AlertSettings()
        guard let f = tables.alerts else { return (a, jobs) }
        if let v = try ranged(f.check_interval_seconds, "[alerts] check_interval_seconds", 1...3600, "seconds") { a.checkIntervalSeconds = v }
        if let v = try ranged(f.missed_grace_minutes, "[alerts] missed_grace_minutes", 0...10080, "minutes") { a.missedGraceMinutes = v }
        if let v = try ranged(f.forwarding_lag_hours, "[alerts] forwarding_lag_hours", 1...8760, "hours") { a.forwardingLagHours = v }
        if let v = try ranged(f.min_free_percent, "[alerts] min_free_percent", 0...99, "percent") { a.minFreePercent = v }
        if let v = try ranged(f.delivery_attempts, "[alerts] delivery_attempts", 1...100, "attempts") { a.deliveryAttempts = v }
        if let url = f.webhook_url, !url.isEmpty {
            guard let u = URLComponents(string: url), ["http", "https"].contains(u.scheme ?? ""), u.host?.isEmpty == false else {
                throw RelayError(.config, "\(path): [alerts] webhook_url must be an http:// or https:// URL, not \(Terminal.quoted(url))")
            }
            guard let secret = f.webhook_secret_file, !secret.isEmpty else {
                throw RelayError(
                    .config,
                    "\(path): [alerts] webhook_url needs webhook_secret_file, a file holding the shared secret the relay signs each alert with (e.g. `openssl rand -hex 32 > FILE`)"
                )
            }
            a.webhookURL = url
            a.webhookSecretFile = secret
            a.webhookCAFile = f.webhook_ca_file
        }
        if let host = f.smtp_host, !host.isEmpty {
            a.smtpHost = host
            if let s = f.smtp_security {
                guard ["starttls", "tls", "none"].contains(s) else {
                    throw RelayError(.config, "\(path): [alerts] smtp_security is starttls (the default), tls or none, not \(Terminal.quoted(s))")
                }
                a.smtpSecurity = s
            }
            // Without smtp_port, the security's own port (implicit TLS spoken to 587 fails at every alert).
            a.smtpPort = SMTPSettings.defaultPort(for: SMTPSettings.Security(rawValue: a.smtpSecurity) ?? .starttls)
            if let v = try ranged(f.smtp_port, "[alerts] smtp_port", 1...65535, "(a TCP port)") { a.smtpPort = v }
            guard let from = f.smtp_from, from.contains("@") else {
                throw RelayError(.config, "\(path): [alerts] smtp_host needs smtp_from, the sender's address (e.g. \"outpost@branch.example\")")
            }
            guard let to = f.smtp_to, !to.isEmpty, to.allSatisfy({ $0.contains("@") }) else {
                throw RelayError(.config, "\(path): [alerts] smtp_host needs smtp_to, a list of recipients' addresses (e.g. [\"admin@example.org\"])")
            }
            if (f.smtp_user == nil) != (f.smtp_password_file == nil) {
                throw RelayError(.config, "\(path): [alerts] set both smtp_user and smtp_password_file, or neither")
            }
            a.smtpFrom = from
            a.smtpTo = to
            a.smtpUser = f.smtp_user
            a.smtpPasswordFile = f.smtp_password_file
            a.smtpCAFile = f.smtp_ca_file
        }
        return (a, jobs)
    }
}
