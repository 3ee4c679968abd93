import Foundation
import OutpostCore
import Testing

@testable import OutpostRelay

/// relay.toml's `[alerts]` and `[jobs]` tables, read through `RelayConfiguration.load` as `relay serve` reads
/// them: values in their ranges, no stray key, and channels that can work (a webhook with its secret, mail with
/// sender and recipients).
@Suite struct AlertSettingsTests {
    func load(_ text: String) throws -> RelayConfiguration {
        let path = NSTemporaryDirectory() + "/outpost-alerts-\(UUID().uuidString.prefix(8)).toml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try RelayConfiguration.load(path: path)
    }

    /// The message of the refusal of `text`, which must be a configuration error.
    func refusal(_ text: String) -> String? {
        let e = #expect(throws: RelayError.self) { try self.load(text) }
        #expect(e?.code == .config)
        return e?.message
    }

    static let smtp = "[alerts]\nsmtp_host = \"mail.example.org\"\nsmtp_from = \"outpost@example.org\"\nsmtp_to = [\"admin@example.org\"]\n"

    @Test func withoutTheTablesTheDefaultsHold() throws {
        let c = try load("listen = \"127.0.0.1:9000\"\n")
        #expect(c.alerts == AlertSettings() && c.jobs == JobSettings())
        #expect(c.alerts.webhookURL == nil && c.alerts.smtpHost == nil, "no channel: alerts are only listed")
        let sample = RelayConfiguration.sample.replacingOccurrences(of: "# [alerts]", with: "[alerts]")
            .replacingOccurrences(of: "# [jobs]", with: "[jobs]")
        #expect(try load(sample).alerts == AlertSettings(), "the sample's tables, uncommented, hold the defaults")
    }

    @Test func theTablesAreRead() throws {
        let c = try load(
            """
            listen = "127.0.0.1:9000"
            [jobs]
            backup_deadline_hours = 6
            agent_silence_minutes = 5
            backup_now_minutes = 15
            [alerts]
            check_interval_seconds = 30
            missed_grace_minutes = 0
            forwarding_lag_hours = 48
            min_free_percent = 0
            delivery_attempts = 3
            webhook_url = "https://alerts.example.org/outpost"
            webhook_secret_file = "/etc/outpost/webhook.secret"
            smtp_host = "mail.example.org"
            smtp_port = 2525
            smtp_user = "outpost"
            smtp_password_file = "/etc/outpost/smtp.password"
            smtp_from = "outpost@example.org"
            smtp_to = ["a@example.org", "b@example.org"]
            """)
        #expect(c.jobs.backupDeadlineHours == 6 && c.jobs.agentSilenceMinutes == 5 && c.jobs.backupNowMinutes == 15)
        #expect(c.backupDeadlineHours == 6)
        let a = c.alerts
        #expect(a.checkIntervalSeconds == 30 && a.missedGraceMinutes == 0 && a.forwardingLagHours == 48)
        #expect(a.minFreePercent == 0 && a.deliveryAttempts == 3)
        #expect(a.webhookURL == "https://alerts.example.org/outpost" && a.webhookSecretFile == "/etc/outpost/webhook.secret")
        #expect(a.smtpHost == "mail.example.org" && a.smtpPort == 2525 && a.smtpSecurity == "starttls")
        #expect(a.smtpUser == "outpost" && a.smtpPasswordFile == "/etc/outpost/smtp.password")
        #expect(a.smtpFrom == "outpost@example.org" && a.smtpTo == ["a@example.org", "b@example.org"])
    }

    @Test func valuesOutOfRangeAreRefusedNamingTheKeyAndTheRange() {
        let cases: [(String, String)] = [
            ("[alerts]\ncheck_interval_seconds = 0\n", "[alerts] check_interval_seconds must be 1 to 3600 seconds, not 0"),
            ("[alerts]\nmissed_grace_minutes = -1\n", "[alerts] missed_grace_minutes must be 0 to 10080 minutes, not -1"),
            ("[alerts]\nforwarding_lag_hours = 0\n", "[alerts] forwarding_lag_hours must be 1 to 8760 hours, not 0"),
            ("[alerts]\nmin_free_percent = 100\n", "[alerts] min_free_percent must be 0 to 99 percent, not 100"),
            ("[alerts]\ndelivery_attempts = 0\n", "[alerts] delivery_attempts must be 1 to 100 attempts, not 0"),
            (Self.smtp + "smtp_port = 0\n", "[alerts] smtp_port must be 1 to 65535 (a TCP port), not 0"),
            ("[jobs]\nbackup_deadline_hours = 169\n", "[jobs] backup_deadline_hours must be 1 to 168 hours, not 169"),
            ("[jobs]\nagent_silence_minutes = 0\n", "[jobs] agent_silence_minutes must be 1 to 1440 minutes, not 0"),
            ("[jobs]\nbackup_now_minutes = 1441\n", "[jobs] backup_now_minutes must be 1 to 1440 minutes, not 1441"),
        ]
        for (text, message) in cases {
            let m = refusal(text)
            #expect(m?.hasSuffix(message) == true, "\(m ?? "accepted"): \(text)")
        }
    }

    /// A key appended below a table (as operators append `proxy = …`) belongs to it: refused, not ignored.
    @Test func aKeyBelowTheTablesIsRefusedNotIgnored() {
        for table in ["alerts", "jobs"] {
            let m = refusal("[\(table)]\nproxy = \"http://p:3128\"\n")
            #expect(m?.contains("[\(table)] has no setting proxy") == true && m?.contains("move proxy above that line") == true, "\(m ?? "")")
        }
    }

    @Test func aValueOfTheWrongTypeIsRefused() {
        #expect(refusal("[alerts]\ncheck_interval_seconds = \"60\"\n") != nil)
        #expect(refusal("[alerts]\nsmtp_host = \"mail.example.org\"\nsmtp_from = \"o@example.org\"\nsmtp_to = \"a@example.org\"\n") != nil)
    }

    @Test func aWebhookNeedsAnHTTPURLAndASecretFile() throws {
        let noSecret = refusal("[alerts]\nwebhook_url = \"https://alerts.example.org/x\"\n")
        #expect(noSecret?.contains("webhook_url needs webhook_secret_file") == true, "\(noSecret ?? "")")
        let ftp = refusal("[alerts]\nwebhook_url = \"ftp://alerts.example.org/x\"\nwebhook_secret_file = \"/s\"\n")
        #expect(ftp?.hasSuffix("webhook_url must be an http:// or https:// URL, not \"ftp://alerts.example.org/x\"") == true, "\(ftp ?? "")")
        let noHost = refusal("[alerts]\nwebhook_url = \"https:///x\"\nwebhook_secret_file = \"/s\"\n")
        #expect(noHost?.contains("webhook_url must be an http:// or https:// URL") == true, "\(noHost ?? "")")
        let empty = try load("[alerts]\nwebhook_url = \"\"\n")
        #expect(empty.alerts.webhookURL == nil, "an empty URL is no webhook")
    }

    @Test func mailNeedsASenderAndRecipients() {
        let noFrom = refusal("[alerts]\nsmtp_host = \"mail.example.org\"\nsmtp_to = [\"a@example.org\"]\n")
        #expect(noFrom?.contains("smtp_host needs smtp_from") == true, "\(noFrom ?? "")")
        let badFrom = refusal("[alerts]\nsmtp_host = \"mail.example.org\"\nsmtp_from = \"outpost\"\nsmtp_to = [\"a@example.org\"]\n")
        #expect(badFrom?.contains("smtp_host needs smtp_from") == true)
        let noTo = refusal("[alerts]\nsmtp_host = \"mail.example.org\"\nsmtp_from = \"o@example.org\"\n")
        #expect(noTo?.contains("smtp_host needs smtp_to") == true, "\(noTo ?? "")")
        let emptyTo = refusal("[alerts]\nsmtp_host = \"mail.example.org\"\nsmtp_from = \"o@example.org\"\nsmtp_to = []\n")
        #expect(emptyTo?.contains("smtp_host needs smtp_to") == true)
        let badTo = refusal("[alerts]\nsmtp_host = \"mail.example.org\"\nsmtp_from = \"o@example.org\"\nsmtp_to = [\"a@example.org\", \"admin\"]\n")
        #expect(badTo?.contains("smtp_host needs smtp_to") == true)
    }

    @Test func mailUserAndPasswordFileGoTogether() {
        for key in ["smtp_user = \"outpost\"", "smtp_password_file = \"/etc/outpost/smtp.password\""] {
            let m = refusal(Self.smtp + key + "\n")
            #expect(m?.contains("set both smtp_user and smtp_password_file, or neither") == true, "\(m ?? "")")
        }
    }

    @Test func mailSecurityIsStarttlsTlsOrNone() {
        let m = refusal(Self.smtp + "smtp_security = \"ssl\"\n")
        #expect(m?.contains("smtp_security is starttls (the default), tls or none, not \"ssl\"") == true, "\(m ?? "")")
    }

    /// Without smtp_port the port is the security's own (587, 465, 25, as relay.toml's sample says): implicit TLS
    /// spoken to the STARTTLS port 587 would fail at every alert.
    @Test func theMailPortFollowsTheSecurityUnlessGiven() throws {
        #expect(try load(Self.smtp).alerts.smtpPort == 587)
        #expect(try load(Self.smtp + "smtp_security = \"starttls\"\n").alerts.smtpPort == 587)
        #expect(try load(Self.smtp + "smtp_security = \"tls\"\n").alerts.smtpPort == 465)
        #expect(try load(Self.smtp + "smtp_security = \"none\"\n").alerts.smtpPort == 25)
        #expect(try load(Self.smtp + "smtp_security = \"tls\"\nsmtp_port = 2465\n").alerts.smtpPort == 2465)
    }
}
