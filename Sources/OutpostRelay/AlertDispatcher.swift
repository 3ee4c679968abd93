import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import OutpostCore
import OutpostStore

/// Sends queued alert notifications (`AlertBook`) to the channels relay.toml's `[alerts]` configures: a signed
/// webhook and email. One attempt per delivery per round; a failure is recorded with its reason, logged, retried
/// with backoff, and shown by `relay alerts` when it failed for good.
public final class AlertDispatcher: Sendable {
    let store: Store
    let relayName: String
    let webhook: WebhookNotifier?
    let mailer: SMTPMailer?
    let maxAttempts: Int
    let logger: Logger
    let http: HTTPClient?

    /// The channels deliveries are queued for.
    public var channels: [String] { (webhook == nil ? [] : ["webhook"]) + (mailer == nil ? [] : ["email"]) }

    /// Reads the secrets the settings name; every problem names the key and the file.
    public init(store: Store, settings: AlertSettings, relayName: String, logger: Logger) throws {
        self.store = store
        self.relayName = relayName
        self.logger = logger
        maxAttempts = settings.deliveryAttempts
        func secret(_ path: String, _ key: String) throws -> String {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw RelayError(.config, "[alerts] \(key) names \(path), which cannot be read; check the path and its permissions")
            }
            let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !value.isEmpty else { throw RelayError(.config, "[alerts] \(key) names \(path), which is empty") }
            return value
        }
        if let url = settings.webhookURL, let file = settings.webhookSecretFile {
            var config = HTTPClient.Configuration()
            config.redirectConfiguration = .disallow
            config.timeout = .init(connect: .seconds(10), read: .seconds(10))
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
            http = client
            let s = WebhookSettings(url: url, secret: try secret(file, "webhook_secret_file"), caCertificatePath: settings.webhookCAFile)
            try s.validate()
            webhook = WebhookNotifier(settings: s, httpClient: client)
        } else {
            http = nil
            webhook = nil
        }
        if let host = settings.smtpHost, let from = settings.smtpFrom {
            let s = SMTPSettings(
                host: host, port: settings.smtpPort, security: SMTPSettings.Security(rawValue: settings.smtpSecurity) ?? .starttls,
                username: settings.smtpUser, password: try settings.smtpPasswordFile.map { try secret($0, "smtp_password_file") }, from: from,
                to: settings.smtpTo, caCertificatePath: settings.smtpCAFile)
            try s.validate()
            mailer = SMTPMailer(settings: s)
        } else {
            mailer = nil
        }
    }

    public func shutdown() async {
        try? await http?.shutdown()
    }

    /// The webhook's JSON body (docs/alerts.md).
    struct Notice: Codable {
        var event: String
        var relay: String
        var alert: Int64
        var kind: String
        var subject: String
        var message: String
        var openedAt: Date
        var clearedAt: Date?
        var sentAt: Date
    }

    /// Sends every delivery due now, once each.
    public func deliverDue(now: Date) async {
        let book = AlertBook(store: store)
        let due: [AlertDelivery]
        do { due = try book.due(now: now) } catch {
            logger.error("cannot read the alert deliveries", metadata: ["reason": "\(error)"])
            return
        }
        for d in due {
            guard let (kind, alert) = try? book.alert(d.alert) else { continue }
            let notice = Notice(
                event: d.event, relay: relayName, alert: alert.id, kind: kind, subject: alert.subject, message: alert.message,
                openedAt: alert.openedAt, clearedAt: alert.clearedAt, sentAt: now)
            do {
                try await send(notice, channel: d.channel, delivery: d.id)
                try book.delivered(d.id, now: now)
                logger.info("alert delivered", metadata: ["alert": "\(alert.id)", "event": "\(d.event)", "channel": "\(d.channel)"])
            } catch {
                let permanent = (error as? AlertDeliveryError)?.permanent ?? false
                let final = (try? book.attemptFailed(d, error: "\(error)", permanent: permanent, maxAttempts: maxAttempts, now: now)) ?? false
                logger.error(
                    final ? "alert delivery failed for good" : "alert delivery failed; retried later",
                    metadata: [
                        "alert": "\(alert.id)", "event": "\(d.event)", "channel": "\(d.channel)", "attempt": "\(d.attempts + 1)",
                        "reason": "\(error)",
                    ])
            }
        }
    }

    private func send(_ n: Notice, channel: String, delivery: Int64) async throws {
        switch channel {
        case "webhook":
            guard let webhook else { throw AlertDeliveryError.permanent(.config, "no webhook is configured any more ([alerts] webhook_url)") }
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            encoder.outputFormatting = .sortedKeys
            try await webhook.post(Array(try encoder.encode(n)), eventID: "\(n.alert)-\(n.event)-\(delivery)", now: n.sentAt)
        case "email":
            guard let mailer else { throw AlertDeliveryError.permanent(.config, "no mail server is configured any more ([alerts] smtp_host)") }
            let state = n.event == "cleared" ? "cleared" : n.event == "test" ? "test" : "OPEN"
            let subject = "[Outpost \(n.relay)] \(state): \(n.kind) \(n.subject)"
            var body = """
                \(n.message)

                alert \(n.alert), \(n.kind), \(n.subject)
                opened: \(n.openedAt.formatted(.iso8601))

                """
            if let c = n.clearedAt, n.event != "opened" { body += "cleared: \(c.formatted(.iso8601))\n" }
            body += "\nOn the relay: outpost relay alerts --data DIR\n"
            try await mailer.send(subject: subject, body: body, messageID: "<alert-\(n.alert)-\(n.event)-\(delivery)@\(n.relay)>", date: n.sentAt)
        default:
            throw AlertDeliveryError.permanent(.config, "unknown channel \(channel)")
        }
    }
}
