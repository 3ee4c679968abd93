import AsyncHTTPClient
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTLS
import HummingbirdTesting
import NIOCore
import OutpostCore
import OutpostRelay
import OutpostTLS
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// aiosmtpd (Tests/Support/smtp_server.py) in a child process: a real SMTP server on 127.0.0.1 with its own
/// self-signed certificate, recording each message it accepts.
final class SMTPTestServer {
    /// The interpreter that can import aiosmtpd (Debian's python3-aiosmtpd lands in /usr/bin/python3, which a
    /// pyenv or venv `python3` on PATH may not see); nil when none can.
    static let python: [String]? = {
        for candidate in [["/usr/bin/python3"], ["/usr/bin/env", "python3"]] {
            let probe = Process()
            probe.executableURL = URL(fileURLWithPath: candidate[0])
            probe.arguments = Array(candidate.dropFirst()) + ["-c", "import aiosmtpd"]
            probe.standardOutput = FileHandle.nullDevice
            probe.standardError = FileHandle.nullDevice
            guard (try? probe.run()) != nil else { continue }
            probe.waitUntilExit()
            if probe.terminationStatus == 0 { return candidate }
        }
        return nil
    }()
    static var available: Bool { python != nil }
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Support/smtp_server.py").path

    struct Received: Decodable {
        let mail_from: String
        let rcpt_tos: [String]
        let raw: String
        let subject: String
        let body: String
        let headers: [String: String]
        let tls: Bool
        let authenticated: Bool
    }

    struct Ready: Decodable {
        let port: Int
        let ca: String
    }

    let process = Process()
    /// Its stdin: the server ends when this closes, with the test process if nothing else.
    let input = Pipe()
    let directory = NSTemporaryDirectory() + "outpost-smtp-\(UUID().uuidString.prefix(8))"
    var out: String { directory + "/received.jsonl" }
    private(set) var port = 0
    private(set) var caPath = ""

    /// Starts the server and returns once it accepts connections (it says so on stdout).
    init(_ arguments: [String]) throws {
        let python = try #require(Self.python)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: directory + "/stderr.txt", contents: nil)
        process.executableURL = URL(fileURLWithPath: python[0])
        process.arguments = Array(python.dropFirst()) + [Self.script, "--out", out, "--dir", directory] + arguments
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardInput = input
        process.standardError = FileHandle(forWritingAtPath: directory + "/stderr.txt")
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = stdout.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line += chunk
        }
        guard let ready = try? JSONDecoder().decode(Ready.self, from: line) else {
            let errors = (try? String(contentsOfFile: directory + "/stderr.txt", encoding: .utf8)) ?? ""
            stop()
            throw OutpostError(.io, "the test SMTP server did not start: \(errors)")
        }
        port = ready.port
        caPath = ready.ca
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// What the server accepted, in order.
    func received() throws -> [Received] {
        guard let data = FileManager.default.contents(atPath: out) else { return [] }
        return try data.split(separator: UInt8(ascii: "\n")).map { try JSONDecoder().decode(Received.self, from: Data($0)) }
    }

    func settings(
        security: SMTPSettings.Security = .starttls, password: String? = "s3cret", to: [String] = ["ops@example.com"], trusted: Bool = true
    ) -> SMTPSettings {
        SMTPSettings(
            host: "127.0.0.1", port: port, security: security, username: password == nil ? nil : "alice", password: password,
            from: "outpost@relay.test", to: to, timeout: .seconds(120), caCertificatePath: trusted ? caPath : nil, heloName: "relay.test")
    }
}

/// The senders of alerts, each one attempt, against real servers: aiosmtpd for mail, an in-process
/// Hummingbird receiver for the webhook.
@Suite struct AlertDeliveryTests {
    static let noAiosmtpd = "python3 cannot import aiosmtpd: install python3-aiosmtpd (Deploy/install-deps.sh) to run the SMTP tests"

    /// The failure an attempt threw, as a delivery error.
    func failure(_ attempt: () async throws -> Void) async -> AlertDeliveryError? {
        do {
            try await attempt()
            Issue.record("the attempt succeeded")
            return nil
        } catch let e as AlertDeliveryError {
            return e
        } catch {
            Issue.record("not an AlertDeliveryError: \(error)")
            return nil
        }
    }

    func lines(_ text: String) -> String { text.replacingOccurrences(of: "\r\n", with: "\n") }

    // MARK: SMTP

    @Test(.enabled(if: SMTPTestServer.available, Comment(rawValue: noAiosmtpd)))
    func mailArrivesOverSTARTTLSWithAuthentication() async throws {
        let server = try SMTPTestServer(["--user", "alice", "--password", "s3cret"])
        defer { server.stop() }
        let mailer = SMTPMailer(settings: server.settings(to: ["ops@example.com", "oncall@example.com"]))
        // Non-ASCII: an RFC 2047 subject and a quoted-printable body, with lines a bare "." would end early.
        let subject = "Sauvegarde échouée sur büro-pc ✓ — a subject long enough to need more than one encoded word"
        let body = "Backup of büro-pc failed.\n.hidden starts with a dot\n.\n..two dots\n" + String(repeating: "é", count: 60) + "\nend\n"
        try await mailer.send(subject: subject, body: body, messageID: "alert-42", date: Date(timeIntervalSince1970: 1_700_000_000))
        // Plain ASCII: 7bit, dot-stuffed as is.
        let ascii = "Machine m1 missed its backup.\n.\n.leading dot\n"
        try await mailer.send(subject: "[outpost] m1 missed its backup", body: ascii, messageID: "<alert-43@relay.test>")

        let got = try server.received()
        try #require(got.count == 2)
        #expect(got[0].mail_from == "outpost@relay.test")
        #expect(got[0].rcpt_tos == ["ops@example.com", "oncall@example.com"])
        #expect(got[0].tls && got[0].authenticated)
        #expect(got[0].subject == subject)
        #expect(lines(got[0].body) == body)
        #expect(got[0].headers["Message-ID"] == "<alert-42@relay.test>")
        #expect(got[0].headers["Date"] == "Tue, 14 Nov 2023 22:13:20 +0000")
        #expect(got[0].headers["To"] == "ops@example.com, oncall@example.com")
        #expect(got[0].headers["Content-Type"] == "text/plain; charset=\"utf-8\"" || got[0].headers["Content-Type"] == "text/plain; charset=utf-8")
        #expect(got[0].headers["Content-Transfer-Encoding"] == "quoted-printable")
        #expect(got[0].raw.contains("=?UTF-8?B?"))
        #expect(got[1].subject == "[outpost] m1 missed its backup")
        #expect(lines(got[1].body) == ascii)
        #expect(got[1].headers["Content-Transfer-Encoding"] == "7bit")
        #expect(got[1].headers["Message-ID"] == "<alert-43@relay.test>")
        #expect(got[1].headers["Auto-Submitted"] == "auto-generated")
    }

    @Test(.enabled(if: SMTPTestServer.available, Comment(rawValue: noAiosmtpd)))
    func implicitTLSDelivers() async throws {
        let server = try SMTPTestServer(["--tls", "implicit", "--user", "alice", "--password", "s3cret"])
        defer { server.stop() }
        try await SMTPMailer(settings: server.settings(security: .tls)).send(subject: "over TLS", body: "fine\n", messageID: "tls-1")
        let got = try server.received()
        #expect(got.count == 1 && got.first?.tls == true && got.first?.authenticated == true)
    }

    @Test(.enabled(if: SMTPTestServer.available, Comment(rawValue: noAiosmtpd)))
    func aWrongPasswordIsPermanentAndNamesTheServer() async throws {
        let server = try SMTPTestServer(["--user", "alice", "--password", "s3cret"])
        defer { server.stop() }
        let mailer = SMTPMailer(settings: server.settings(password: "wrong"))
        let error = try #require(await failure { try await mailer.send(subject: "s", body: "b", messageID: "x") })
        #expect(error.permanent && error.code == .unauthorized)
        #expect(error.message.contains("127.0.0.1:\(server.port)"))
        #expect(error.message.contains("authentication failed"))
        #expect(error.message.contains("535"))
        #expect(!error.message.contains("wrong"))
        #expect(try server.received().isEmpty)
    }

    @Test(.enabled(if: SMTPTestServer.available, Comment(rawValue: noAiosmtpd)))
    func aServerWithoutSTARTTLSIsRefusedBeforeAnyPasswordIsSent() async throws {
        let server = try SMTPTestServer(["--tls", "none", "--user", "alice", "--password", "s3cret"])
        defer { server.stop() }
        let error = try #require(await failure { try await SMTPMailer(settings: server.settings()).send(subject: "s", body: "b", messageID: "x") })
        #expect(error.permanent && error.code == .config)
        #expect(error.message.contains("does not offer STARTTLS") && error.message.contains("127.0.0.1:\(server.port)"))
        #expect(try server.received().isEmpty)
    }

    @Test(.enabled(if: SMTPTestServer.available, Comment(rawValue: noAiosmtpd)))
    func anUntrustedCertificateIsRefused() async throws {
        let server = try SMTPTestServer(["--user", "alice", "--password", "s3cret"])
        defer { server.stop() }
        let mailer = SMTPMailer(settings: server.settings(trusted: false))
        let error = try #require(await failure { try await mailer.send(subject: "s", body: "b", messageID: "x") })
        #expect(error.permanent && error.code == .tls, "\(error)")
        #expect(error.message.contains("certificate") && error.message.contains("127.0.0.1:\(server.port)"), "\(error)")
        #expect(try server.received().isEmpty)
    }

    /// security "tls" against a port that speaks plain SMTP: not a certificate problem, and said so.
    @Test(.enabled(if: SMTPTestServer.available, Comment(rawValue: noAiosmtpd)))
    func implicitTLSAgainstAPlainPortNamesThePortAndSecurity() async throws {
        let server = try SMTPTestServer(["--user", "alice", "--password", "s3cret"])
        defer { server.stop() }
        let error = try #require(
            await failure { try await SMTPMailer(settings: server.settings(security: .tls)).send(subject: "s", body: "b", messageID: "x") })
        #expect(error.permanent && error.code == .tls, "\(error)")
        #expect(error.message.contains("smtp_port and smtp_security") && !error.message.contains("not trusted"), "\(error)")
    }

    /// A reply that came in clear after the 220 to STARTTLS is not taken as the first reply over TLS.
    @Test(.enabled(if: SMTPTestServer.available, Comment(rawValue: noAiosmtpd)))
    func aReplyInjectedBeforeTLSIsRefused() async throws {
        let server = try SMTPTestServer(["--user", "alice", "--password", "s3cret", "--inject-after-starttls"])
        defer { server.stop() }
        let error = try #require(await failure { try await SMTPMailer(settings: server.settings()).send(subject: "s", body: "b", messageID: "x") })
        #expect(error.permanent && error.code == .refused, "\(error)")
        #expect(error.message.contains("more than its STARTTLS answer"), "\(error)")
        #expect(try server.received().isEmpty)
    }

    @Test(.enabled(if: SMTPTestServer.available, Comment(rawValue: noAiosmtpd)))
    func aRefusedRecipientStopsTheMessageForEveryone() async throws {
        let server = try SMTPTestServer(["--user", "alice", "--password", "s3cret", "--reject-rcpt", "nobody@example.com"])
        defer { server.stop() }
        let mailer = SMTPMailer(settings: server.settings(to: ["ops@example.com", "nobody@example.com"]))
        let error = try #require(await failure { try await mailer.send(subject: "s", body: "b", messageID: "x") })
        #expect(error.permanent && error.code == .refused)
        #expect(error.message.contains("RCPT TO nobody@example.com: 550"))
        #expect(try server.received().isEmpty)
    }

    @Test(.enabled(if: SMTPTestServer.available, Comment(rawValue: noAiosmtpd)))
    func aServerThatRefusesEHLOIsGreetedWithHELO() async throws {
        let server = try SMTPTestServer(["--tls", "none", "--no-ehlo"])
        defer { server.stop() }
        try await SMTPMailer(settings: server.settings(security: .none, password: nil)).send(subject: "old", body: "server\n", messageID: "helo-1")
        let got = try server.received()
        #expect(got.count == 1 && got.first?.tls == false && got.first?.body == "server\r\n")
    }

    @Test func aRefusedConnectionIsTemporaryAndNamesHostAndPort() async throws {
        let settings = SMTPSettings(host: "127.0.0.1", port: 1, from: "a@relay.test", to: ["b@example.com"], heloName: "relay.test")
        let error = try #require(await failure { try await SMTPMailer(settings: settings).send(subject: "s", body: "b", messageID: "x") })
        #expect(!error.permanent && error.code == .unreachable)
        #expect(error.message.contains("127.0.0.1:1"))
    }

    /// A server that takes the connection and never greets: the exchange ends at its time-out, naming the step.
    @Test func aSilentServerTimesOut() async throws {
        let router = Router()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { live in
            let settings = SMTPSettings(
                host: "127.0.0.1", port: live.port!, from: "a@relay.test", to: ["b@example.com"], timeout: .milliseconds(300), heloName: "relay.test")
            let error = try #require(await failure { try await SMTPMailer(settings: settings).send(subject: "s", body: "b", messageID: "x") })
            #expect(!error.permanent && error.code == .unreachable)
            #expect(error.message.contains("did not finish within") && error.message.contains("the greeting"))
        }
    }

    /// Refused before any connection: what could inject headers or commands, and clear text to another machine.
    @Test func unsafeSettingsAndSubjectsAreRefusedBeforeConnecting() async throws {
        func settings(_ change: (inout SMTPSettings) -> Void) -> SMTPSettings {
            var s = SMTPSettings(
                host: "mail.invalid", username: "alice", password: "p", from: "a@relay.test", to: ["b@example.com"], heloName: "relay.test")
            change(&s)
            return s
        }
        let clear = settings { $0.security = .none }
        let e1 = try #require(await failure { try await SMTPMailer(settings: clear).send(subject: "s", body: "b", messageID: "x") })
        #expect(e1.permanent && e1.code == .config && e1.message.contains("\"none\"") && e1.message.contains("mail.invalid"))
        #expect(throws: Never.self) {
            try settings {
                $0.security = .none; $0.host = "127.0.0.1"
            }.validate()
        }

        let injected = try #require(
            await failure { try await SMTPMailer(settings: settings { _ in }).send(subject: "hi\r\nBcc: x@evil.test", body: "b", messageID: "x") })
        #expect(injected.permanent && injected.code == .invalid && injected.message.contains("line break"))
        for bad in ["a@relay.test\r\nRCPT TO:<x@evil.test>", "Ops <ops@example.com>", "a@x.test, b@y.test", ""] {
            let e = try #require(
                await failure { try await SMTPMailer(settings: settings { $0.to = [bad] }).send(subject: "s", body: "b", messageID: "x") })
            #expect(e.permanent && e.code == .config && e.message.contains("smtp_to address"))
        }
        let e2 = try #require(
            await failure { try await SMTPMailer(settings: settings { $0.from = "x\ny" }).send(subject: "s", body: "b", messageID: "x") })
        #expect(e2.message.contains("smtp_from address") && e2.message.contains("line break"))
    }

    // MARK: Webhook

    struct Captured: Sendable {
        let headers: HTTPFields
        let body: [UInt8]
    }

    /// What reached the receiver's /hook, in order.
    final class Receipts: Sendable {
        private let all = Mutex<[Captured]>([])
        func add(_ captured: Captured) { all.withLock { $0.append(captured) } }
        var list: [Captured] { all.withLock { $0 } }
    }

    /// A receiver that records what reached /hook and answers the other paths with their status.
    func receiver(_ captured: Receipts) -> Router<BasicRequestContext> {
        let router = Router()
        router.post("/hook") { request, context -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            captured.add(Captured(headers: request.headers, body: Array(buffer: body)))
            return Response(status: .noContent)
        }
        router.post("/fail") { _, _ in Response(status: .internalServerError, body: .init(byteBuffer: ByteBuffer(string: "database down"))) }
        router.post("/busy") { _, _ in Response(status: .tooManyRequests) }
        router.post("/moved") { _, _ in Response(status: .movedPermanently, headers: [.location: "/elsewhere"]) }
        router.post("/who") { _, _ in Response(status: .unauthorized) }
        return router
    }

    func withClient(_ body: (HTTPClient) async throws -> Void) async throws {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        configuration.connectionPool.retryConnectionEstablishment = false
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do { try await body(http) } catch {
            try await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    @Test func theSignatureIsHMACSHA256OfTimestampDotBody() {
        // The value docs/alerts.md's receiver example computes (Python's hmac module).
        #expect(
            WebhookNotifier.signature(secret: "test-secret", timestamp: 1_700_000_000, body: Array(#"{"kind":"test"}"#.utf8))
                == "sha256=593d73ddd0f33b78cfd049becd1e6a13f5b0006ebc65e83bb95d2486032125fb")
    }

    @Test func aSignedPostArrivesAsSent() async throws {
        let captured = Receipts()
        let app = Application(router: receiver(captured), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { live in
            try await withClient { http in
                let settings = WebhookSettings(url: "http://127.0.0.1:\(live.port!)/hook", secret: "shared-secret")
                let body = Array(#"{"kind":"missed-backup","machine":"büro-pc"}"#.utf8)
                try await WebhookNotifier(settings: settings, httpClient: http)
                    .post(body, eventID: "evt-1", now: Date(timeIntervalSince1970: 1_700_000_000.9))
                let got = try #require(captured.list.first)
                #expect(got.body == body)
                #expect(got.headers[.contentType] == "application/json")
                #expect(got.headers[.userAgent] == "outpost/\(OutpostVersion.string)")
                #expect(got.headers[HTTPField.Name("X-Outpost-Event")!] == "evt-1")
                let timestamp = try #require(got.headers[HTTPField.Name("X-Outpost-Timestamp")!])
                #expect(timestamp == "1700000000")
                // What a receiver does: recompute the HMAC over "timestamp." and the body it got.
                let mac = HMAC<SHA256>.authenticationCode(
                    for: Array((timestamp + ".").utf8) + got.body, using: SymmetricKey(data: Array("shared-secret".utf8)))
                #expect(got.headers[HTTPField.Name("X-Outpost-Signature")!] == "sha256=" + Hex.encode(Array(mac)))
            }
        }
    }

    @Test func answersSortIntoTemporaryAndPermanentFailures() async throws {
        let app = Application(router: receiver(Receipts()), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { live in
            try await withClient { http in
                func post(_ url: String) async -> AlertDeliveryError? {
                    await failure {
                        try await WebhookNotifier(settings: WebhookSettings(url: url, secret: "s"), httpClient: http).post([], eventID: "e")
                    }
                }
                let base = "http://127.0.0.1:\(live.port!)"
                let failed = try #require(await post(base + "/fail"))
                #expect(!failed.permanent && failed.code == .remote)
                #expect(failed.message.contains("HTTP 500") && failed.message.contains("database down") && failed.message.contains(base))
                #expect(try #require(await post(base + "/busy")).permanent == false)
                let missing = try #require(await post(base + "/missing"))
                #expect(missing.permanent && missing.message.contains("HTTP 404"))
                // The path can hold a token: messages name scheme, host and port only.
                #expect(!missing.message.contains("/missing"))
                let moved = try #require(await post(base + "/moved"))
                #expect(moved.permanent && moved.message.contains("HTTP 301") && moved.message.contains("/elsewhere"))
                let who = try #require(await post(base + "/who"))
                #expect(who.permanent && who.code == .unauthorized && who.message.contains("secret"))
                let refused = try #require(await post("http://127.0.0.1:1/hook"))
                #expect(!refused.permanent && refused.code == .unreachable && refused.message.contains("127.0.0.1:1"))
            }
        }
    }

    @Test func onlyHTTPAndHTTPSURLsAreAccepted() async throws {
        try await withClient { http in
            for url in ["ftp://example.com/hook", "file:///tmp/hook", "not a url", "https:///nohost"] {
                let error = try #require(
                    await failure {
                        try await WebhookNotifier(settings: WebhookSettings(url: url, secret: "s"), httpClient: http).post([], eventID: "e")
                    })
                #expect(error.permanent && error.code == .config && error.message.contains("http://"))
            }
            let empty = try #require(
                await failure {
                    try await WebhookNotifier(settings: WebhookSettings(url: "https://example.com/h", secret: ""), httpClient: http).post(
                        [], eventID: "e")
                })
            #expect(empty.permanent && empty.message.contains("secret"))
        }
    }

    @Test func anHTTPSReceiverIsTrustedThroughTheConfiguredCA() async throws {
        let identity = try TLSIdentity.selfSigned(commonName: "receiver", hosts: ["localhost"])
        let caPath = NSTemporaryDirectory() + "outpost-webhook-ca-\(UUID().uuidString.prefix(8)).pem"
        try identity.certificatePEM.write(toFile: caPath, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: caPath) }
        let captured = Receipts()
        let app = Application(
            router: receiver(captured), server: try .tls(.http1(), tlsConfiguration: try identity.serverConfiguration()),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { live in
            try await withClient { http in
                let url = "https://localhost:\(live.port!)/hook"
                let untrusted = try #require(
                    await failure {
                        try await WebhookNotifier(settings: WebhookSettings(url: url, secret: "s"), httpClient: http).post([1], eventID: "e")
                    })
                #expect(untrusted.permanent && untrusted.code == .tls && untrusted.message.contains("certificate"))
                #expect(captured.list.isEmpty)
                let trusted = WebhookSettings(url: url, secret: "s", caCertificatePath: caPath)
                try await WebhookNotifier(settings: trusted, httpClient: http).post([1], eventID: "e")
                #expect(captured.list.count == 1)
            }
        }
    }
}
