import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import OutpostCore
import Synchronization

/// The mail server the relay sends alerts through, and the envelope (relay.toml's SMTP settings).
public struct SMTPSettings: Sendable, Equatable {
    /// How the connection is protected. Alerts name machines and failures, and AUTH carries a password.
    public enum Security: String, Sendable, Equatable, CaseIterable {
        /// Plain connection upgraded with STARTTLS (port 587); a server that does not offer it is refused.
        case starttls
        /// TLS from the first byte (port 465).
        case tls
        /// No encryption: only to a server on this machine (a local relay such as Postfix on localhost).
        case none
    }

    public var host: String
    public var port: Int
    public var security: Security
    /// AUTH (PLAIN, or LOGIN where only that is offered) when set; never sent over an unencrypted connection
    /// to another machine.
    public var username: String?
    public var password: String?
    /// Bare addresses (`alerts@example.com`), no display names.
    public var from: String
    public var to: [String]
    /// How long one whole exchange may take, connection to QUIT.
    public var timeout: Duration
    /// A PEM file of a CA (or a self-signed certificate) trusted besides the system's roots.
    public var caCertificatePath: String?
    /// The name given in EHLO/HELO.
    public var heloName: String

    /// `port` nil: 587 for STARTTLS, 465 for TLS, 25 for none. `heloName` nil: this machine's host name.
    public init(
        host: String, port: Int? = nil, security: Security = .starttls, username: String? = nil, password: String? = nil, from: String,
        to: [String], timeout: Duration = .seconds(30), caCertificatePath: String? = nil, heloName: String? = nil
    ) {
        self.host = host
        self.port = port ?? Self.defaultPort(for: security)
        self.security = security
        self.username = username
        self.password = password
        self.from = from
        self.to = to
        self.timeout = timeout
        self.caCertificatePath = caCertificatePath
        self.heloName = heloName ?? Self.localHostName()
    }

    public static func defaultPort(for security: Security) -> Int {
        switch security {
        case .starttls: 587
        case .tls: 465
        case .none: 25
        }
    }

    /// How messages name the server: "the SMTP server mail.example.com:587".
    public var target: String {
        "the SMTP server " + (host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host) + ":\(port)"
    }

    /// Refuses what no attempt could get past: no encryption to another machine, a username without a
    /// password, an address that is not a bare address or would inject a header, an unreadable CA file. The
    /// configuration check and every attempt call it.
    public func validate() throws {
        func refuse(_ what: String) -> AlertDeliveryError { .permanent(.config, "SMTP settings for \(target): \(what)") }
        guard !host.isEmpty, !host.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control })
        else {
            throw refuse("the host \"\(printableExcerpt(host, limit: 100))\" is not a host name: set smtp_host to the mail server's name or address")
        }
        guard (1...65535).contains(port) else { throw refuse("port \(port) is not a TCP port: set smtp_port to 587 (STARTTLS), 465 (TLS) or 25") }
        if security == .none, !Self.isLoopback(host) {
            throw refuse(
                "security \"none\" would send the alerts\(username == nil ? "" : " and the password") in clear over the network; it is "
                    + "allowed only to a server on this machine (localhost, 127.0.0.1, ::1): set smtp_security to \"starttls\" or \"tls\"")
        }
        if username != nil, password == nil {
            throw refuse("smtp_user is set but no password: set smtp_password_file too, or neither if the server needs no AUTH")
        }
        if let user = username, user.isEmpty || user.contains("\0") || (password ?? "").contains("\0") {
            throw refuse("the username or password is empty or holds a NUL character, which AUTH cannot carry")
        }
        try Self.checkAddress(from, role: "smtp_from", target: target)
        guard !to.isEmpty else { throw refuse("no recipient: give at least one address in smtp_to") }
        for address in to { try Self.checkAddress(address, role: "smtp_to", target: target) }
        guard !heloName.isEmpty, heloName.unicodeScalars.allSatisfy({ (0x21...0x7e).contains($0.value) }) else {
            throw refuse("the HELO name \"\(printableExcerpt(heloName, limit: 100))\" is not a host name: give this machine's name")
        }
        if let path = caCertificatePath, !FileManager.default.isReadableFile(atPath: path) {
            throw refuse("the CA certificate \(path) cannot be read: set smtp_ca_file to a readable PEM file")
        }
    }

    /// A bare ASCII address: a line break would inject headers or commands, a space or bracket a display name
    /// or a second address.
    static func checkAddress(_ address: String, role: String, target: String) throws {
        let problem: String? =
            if address.isEmpty { "is empty" } else if address.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\r\n" }) {
                "holds a line break"
            } else if !address.unicodeScalars.allSatisfy({ (0x21...0x7e).contains($0.value) }) {
                "holds a space, a control or a non-ASCII character"
            } else if address.contains(where: { "<>,;\"()".contains($0) }) { "holds <, >, a comma, a semicolon, a quote or a parenthesis" } else {
                nil
            }
        if let problem {
            throw AlertDeliveryError.permanent(
                .config,
                "SMTP settings for \(target): the \(role) address \"\(printableExcerpt(address, limit: 100))\" \(problem): "
                    + "give one bare address such as alerts@example.com")
        }
    }

    /// localhost, 127.0.0.0/8 or ::1: the only hosts security "none" may send to.
    static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if h == "localhost" || h == "::1" || h == "0:0:0:0:0:0:0:1" { return true }
        let octets = h.split(separator: ".", omittingEmptySubsequences: false).map { UInt8($0) }
        return octets.count == 4 && octets.allSatisfy { $0 != nil } && octets[0] == 127
    }

    static func localHostName() -> String {
        let name = ProcessInfo.processInfo.hostName
        return name.isEmpty || name.contains(where: { $0.isWhitespace }) ? "localhost" : name
    }

    func tlsContext() throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if let ca = caCertificatePath { tls.additionalTrustRoots = [.file(ca)] }
        do { return try NIOSSLContext(configuration: tls) } catch {
            throw AlertDeliveryError.permanent(
                .config,
                "SMTP settings for \(target): the CA certificate \(caCertificatePath ?? "") cannot be loaded (\(error)): set smtp_ca_file to a PEM file"
            )
        }
    }
}

/// Sends an alert by mail: one SMTP exchange per call (SwiftNIO, TLS by NIOSSL with the certificate verified).
/// Retrying is the delivery queue's business; the thrown `AlertDeliveryError` says whether a retry can help:
/// 5xx answers, a refused password, a missing STARTTLS and an untrusted certificate are permanent; a refused
/// connection, a time-out, a cut connection and 4xx answers temporary.
public struct SMTPMailer: Sendable {
    public let settings: SMTPSettings

    public init(settings: SMTPSettings) {
        self.settings = settings
    }

    /// Sends one text/plain message to every recipient. Nothing reaches anyone unless every recipient is
    /// accepted: a refused RCPT ends the exchange before DATA.
    public func send(subject: String, body: String, messageID: String, date: Date = Date()) async throws {
        try settings.validate()
        let message = try SMTPMessage.render(settings: settings, subject: subject, body: body, messageID: messageID, date: date)
        let tls: NIOSSLContext? = settings.security == .none ? nil : try settings.tlsContext()
        let host = settings.host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        // SNI and the certificate's name: an address is checked against the certificate's IP entries instead.
        let serverName: String? = (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
        let implicitTLS = settings.security == .tls ? tls : nil
        let deadline = NIODeadline.now() + TimeAmount(settings.timeout)
        let target = settings.target

        let channel: NIOAsyncChannel<String, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(TimeAmount(settings.timeout))
                .connect(host: host, port: settings.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let implicitTLS {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: implicitTLS, serverHostname: serverName))
                        }
                        try channel.pipeline.syncOperations.addHandler(SMTPLineHandler())
                        return try NIOAsyncChannel<String, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            let why = error is ChannelError ? "no connection within \(settings.timeout)" : printableExcerpt("\(error)")
            throw AlertDeliveryError.temporary(
                .unreachable, "could not connect to \(target) (\(why)): check host and port; the alert stays queued and is sent again later")
        }
        // The whole exchange is bounded: at the deadline the connection is closed under the conversation,
        // whose next read then reports the step it was waiting in.
        let timedOut = TimeoutFlag()
        let timer = channel.channel.eventLoop.scheduleTask(deadline: deadline) { [channel = channel.channel] in
            timedOut.fire()
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        try await channel.executeThenClose { inbound, outbound in
            var session = SMTPSession(
                settings: settings, channel: channel.channel, replies: inbound.makeAsyncIterator(), outbound: outbound, timedOut: timedOut)
            try await session.run(message: message, tls: tls, serverName: serverName)
        }
    }
}

/// Set once the exchange's deadline passed.
final class TimeoutFlag: Sendable {
    private let fired = Atomic(false)
    func fire() { fired.store(true, ordering: .relaxed) }
    var hasFired: Bool { fired.load(ordering: .relaxed) }
}

/// One SMTP reply: its code and the text of each of its lines.
struct SMTPReply {
    var code: Int
    var lines: [String]
    var text: String { printableExcerpt("\(code) " + lines.joined(separator: " ")) }
}

/// The client side of one exchange, step by step. Each failure names the step and what the server said.
struct SMTPSession {
    let settings: SMTPSettings
    let channel: any Channel
    var replies: NIOAsyncChannelInboundStream<String>.AsyncIterator
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    let timedOut: TimeoutFlag
    /// Lines taken from `replies`; compared with what the line handler passed on when TLS starts.
    var linesRead = 0
    var encrypted = false

    var target: String { settings.target }

    init(
        settings: SMTPSettings, channel: any Channel, replies: NIOAsyncChannelInboundStream<String>.AsyncIterator,
        outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, timedOut: TimeoutFlag
    ) {
        self.settings = settings
        self.channel = channel
        self.replies = replies
        self.outbound = outbound
        self.timedOut = timedOut
        encrypted = settings.security == .tls
    }

    mutating func run(message: [UInt8], tls: NIOSSLContext?, serverName: String?) async throws {
        let greeting = try await reply(step: "the greeting")
        try expect(greeting, 220, step: "the greeting", fix: "the server does not take mail now")
        var capabilities = try await hello()
        if settings.security == .starttls {
            guard capabilities.keywords.contains("STARTTLS"), let tls else {
                throw AlertDeliveryError.permanent(
                    .config,
                    "\(target) does not offer STARTTLS, and security is \"starttls\": Outpost does not send alerts or a password in clear. "
                        + "Use a server or port that offers STARTTLS (usually 587), or smtp_security = \"tls\" for one that speaks TLS from the start (465)"
                )
            }
            let answer = try await command("STARTTLS")
            try expect(answer, 220, step: "STARTTLS", fix: "check that the server's TLS is set up")
            try await startTLS(tls, serverName: serverName)
            capabilities = try await hello()
        }
        if let username = settings.username, let password = settings.password {
            guard encrypted || (settings.security == .none && SMTPSettings.isLoopback(settings.host)) else {
                throw AlertDeliveryError.permanent(.config, "\(target): refusing to send the password over an unencrypted connection")
            }
            try await authenticate(username: username, password: password, mechanisms: capabilities.authMechanisms)
        }
        let sender = try await command("MAIL FROM:<\(settings.from)>")
        try expect(sender, 250, step: "MAIL FROM \(settings.from)", fix: "check that the account may send as smtp_from")
        for recipient in settings.to {
            let accepted = try await command("RCPT TO:<\(recipient)>")
            try expect(accepted, 250...251, step: "RCPT TO \(recipient)", fix: "check smtp_to")
        }
        let data = try await command("DATA")
        try expect(data, 354, step: "DATA", fix: "the server refused the message")
        try await write(message, step: "the message")
        let queued = try await reply(step: "the end of the message")
        try expect(queued, 250, step: "the message", fix: "the server refused the message")
        // Delivered: a failure from here on must not make the queue send it again.
        _ = try? await command("QUIT")
    }

    /// EHLO, or HELO where a server refuses EHLO; what the server offers.
    mutating func hello() async throws -> Capabilities {
        let ehlo = try await command("EHLO \(settings.heloName)")
        if ehlo.code == 250 { return Capabilities(ehlo) }
        guard (500..<600).contains(ehlo.code) else {
            throw failure(ehlo, step: "EHLO \(settings.heloName)", fix: "the server does not take mail now")
        }
        let helo = try await command("HELO \(settings.heloName)")
        try expect(helo, 250, step: "HELO \(settings.heloName)", fix: "the server refuses this machine's name")
        return Capabilities(lines: [])
    }

    /// Puts TLS under the conversation. Anything the server sent after its 220 arrived in clear and could be
    /// an injected reply, so the upgrade is refused unless nothing is waiting (checked on the channel's event
    /// loop, where nothing more can arrive before the TLS handler is in place).
    mutating func startTLS(_ tls: NIOSSLContext, serverName: String?) async throws {
        let consumed = linesRead
        let channel = self.channel
        let clean = try await channel.eventLoop.submit {
            let lines = try channel.pipeline.syncOperations.handler(type: SMTPLineHandler.self)
            guard lines.bufferedBytes == 0, lines.linesPassedOn == consumed else { return false }
            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName), position: .first)
            return true
        }.get()
        guard clean else {
            throw AlertDeliveryError.permanent(
                .refused, "\(target) sent more than its STARTTLS answer before TLS began (a sign of tampering on the way): the alert was not sent")
        }
        encrypted = true
    }

    mutating func authenticate(username: String, password: String, mechanisms: [String]) async throws {
        let step = "authentication as \(username)"
        guard !mechanisms.isEmpty else {
            throw AlertDeliveryError.permanent(
                .config,
                "\(target) does not offer authentication (AUTH), but smtp_user is set: remove smtp_user and smtp_password_file, or use the server's submission port"
            )
        }
        let fix = "authentication failed: check smtp_user and the password in smtp_password_file"
        if mechanisms.contains("PLAIN") {
            let token = Data(Array("\0\(username)\0\(password)".utf8)).base64EncodedString()
            let answer = try await command("AUTH PLAIN \(token)", shown: "AUTH PLAIN")
            try expect(answer, 235, step: "\(step) (AUTH PLAIN)", fix: fix)
        } else if mechanisms.contains("LOGIN") {
            let start = try await command("AUTH LOGIN")
            try expect(start, 334, step: "\(step) (AUTH LOGIN)", fix: fix)
            let user = try await command(Data(Array(username.utf8)).base64EncodedString(), shown: "AUTH LOGIN username")
            try expect(user, 334, step: "\(step) (AUTH LOGIN)", fix: fix)
            let pass = try await command(Data(Array(password.utf8)).base64EncodedString(), shown: "AUTH LOGIN password")
            try expect(pass, 235, step: "\(step) (AUTH LOGIN)", fix: fix)
        } else {
            throw AlertDeliveryError.permanent(
                .config, "\(target) offers AUTH \(mechanisms.joined(separator: " ")) only; Outpost authenticates with PLAIN or LOGIN over TLS")
        }
    }

    /// Sends one command line and reads its reply. `shown` stands for the line in messages (never a password).
    mutating func command(_ line: String, shown: String? = nil) async throws -> SMTPReply {
        let step = shown ?? line
        try await write(Array((line + "\r\n").utf8), step: step)
        return try await reply(step: step)
    }

    /// A write fails with a bare "closed channel" when the connection ended first (a TLS handshake the
    /// certificate check ended, say): the reason then waits on the reading side, so it is looked for there.
    mutating func write(_ bytes: [UInt8], step: String) async throws {
        do { try await outbound.write(ByteBuffer(bytes: bytes)) } catch {
            do { _ = try await replies.next() } catch { throw lost(error, step: step) }
            throw lost(error, step: step)
        }
    }

    /// One reply: lines "250-…" up to the last "250 …".
    mutating func reply(step: String) async throws -> SMTPReply {
        var lines: [String] = []
        while true {
            let next: String?
            do { next = try await replies.next() } catch { throw lost(error, step: step) }
            guard let line = next else { throw lost(nil, step: step) }
            linesRead += 1
            let bytes = Array(line.utf8)
            guard bytes.count >= 3, bytes[0..<3].allSatisfy({ (0x30...0x39).contains($0) }), bytes.count == 3 || bytes[3] == 0x20 || bytes[3] == 0x2d,
                let code = Int(String(decoding: bytes[0..<3], as: UTF8.self))
            else {
                throw AlertDeliveryError.permanent(
                    .config,
                    "\(target) answered \(step) with \"\(printableExcerpt(line, limit: 100))\", which is not SMTP: check smtp_host, smtp_port and smtp_security"
                )
            }
            lines.append(bytes.count > 4 ? String(decoding: bytes[4...], as: UTF8.self) : "")
            if bytes.count == 3 || bytes[3] == 0x20 { return SMTPReply(code: code, lines: lines) }
        }
    }

    func expect(_ reply: SMTPReply, _ expected: ClosedRange<Int>, step: String, fix: String) throws {
        guard expected.contains(reply.code) else { throw failure(reply, step: step, fix: fix) }
    }

    func expect(_ reply: SMTPReply, _ expected: Int, step: String, fix: String) throws {
        try expect(reply, expected...expected, step: step, fix: fix)
    }

    /// A refusal: 5xx stands until something changes, 4xx (and anything unexpected) may pass later.
    func failure(_ reply: SMTPReply, step: String, fix: String) -> AlertDeliveryError {
        let authentication = step.hasPrefix("authentication")
        if (500..<600).contains(reply.code) {
            return .permanent(authentication ? .unauthorized : .refused, "\(target) refused \(step): \(reply.text); \(fix)")
        }
        return .temporary(.remote, "\(target) answered \(step) with \(reply.text); the alert stays queued and is sent again later")
    }

    /// The connection failed or closed while waiting in `step`.
    func lost(_ error: (any Error)?, step: String) -> AlertDeliveryError {
        if timedOut.hasFired {
            return .temporary(
                .unreachable,
                "\(target) did not finish within \(settings.timeout) (waiting for \(step)); the alert stays queued and is sent again later")
        }
        if let error, let tls = TLSFailure(error) {
            return tls.permanent
                ? .permanent(
                    .tls,
                    "the TLS handshake with \(target) failed (\(tls.detail)): \(tls.fix(caSetting: "smtp_ca_file", portHint: "check smtp_port and smtp_security (starttls on 587, tls on 465)"))"
                )
                : .temporary(.unreachable, "the TLS connection to \(target) was cut during \(step) (\(tls.detail)); the alert is sent again later")
        }
        if let error = error as? SMTPLineHandler.LineTooLong {
            return .temporary(.remote, "\(target) sent a line of more than \(error.limit) bytes during \(step); the alert is sent again later")
        }
        let why = error.map { " (\(printableExcerpt("\($0)")))" } ?? ""
        return .temporary(.unreachable, "\(target) closed the connection during \(step)\(why); the alert stays queued and is sent again later")
    }
}

/// What EHLO announced: the keywords, and the AUTH mechanisms.
struct Capabilities {
    var lines: [String]

    init(lines: [String]) { self.lines = lines }
    init(_ ehlo: SMTPReply) { lines = Array(ehlo.lines.dropFirst()) }

    var keywords: Set<String> { Set(lines.compactMap { $0.split(separator: " ").first.map { $0.uppercased() } }) }

    /// "AUTH PLAIN LOGIN", and the old "AUTH=PLAIN LOGIN" some servers still send.
    var authMechanisms: [String] {
        lines.flatMap { line -> [String] in
            let upper = line.uppercased()
            guard upper.hasPrefix("AUTH ") || upper.hasPrefix("AUTH=") else { return [] }
            return upper.dropFirst(5).split(separator: " ").map(String.init)
        }
    }
}

/// Splits the server's bytes into lines (CRLF, or a lax server's bare LF), at most 4 KiB each. It counts what
/// it passed on and shows what it holds, so that STARTTLS can tell whether anything came after the 220.
final class SMTPLineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = String

    struct LineTooLong: Error { let limit: Int }
    static let limit = 4096

    private var pending = ByteBuffer()
    private(set) var linesPassedOn = 0
    var bufferedBytes: Int { pending.readableBytes }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = Self.unwrapInboundIn(data)
        pending.writeBuffer(&bytes)
        while let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - pending.readableBytesView.startIndex
            guard length <= Self.limit, var line = pending.readBytes(length: length) else { break }
            pending.moveReaderIndex(forwardBy: 1)
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            linesPassedOn += 1
            context.fireChannelRead(Self.wrapInboundOut(String(decoding: line, as: UTF8.self)))
        }
        if pending.readableBytes > Self.limit {
            context.fireErrorCaught(LineTooLong(limit: Self.limit))
            context.close(promise: nil)
            return
        }
        pending.discardReadBytes()
    }
}

/// The message as it goes after DATA: headers, a blank line, the body, dot-stuffed, CRLF line endings, and
/// the final ".".
enum SMTPMessage {
    static func render(settings: SMTPSettings, subject: String, body: String, messageID: String, date: Date) throws -> [UInt8] {
        guard !subject.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\r\n" }) else {
            throw AlertDeliveryError.permanent(.invalid, "the alert's subject holds a line break; it was not sent to \(settings.target)")
        }
        var id = messageID
        if id.hasPrefix("<") && id.hasSuffix(">") && id.count >= 2 { id = String(id.dropFirst().dropLast()) }
        guard !id.isEmpty, id.unicodeScalars.allSatisfy({ (0x21...0x7e).contains($0.value) && $0 != "<" && $0 != ">" }) else {
            throw AlertDeliveryError.permanent(
                .invalid,
                "the alert's message id \"\(printableExcerpt(messageID, limit: 100))\" is not a valid Message-ID; it was not sent to \(settings.target)"
            )
        }
        if !id.contains("@") { id += "@" + settings.heloName }

        let (encoding, bodyLines) = encodeBody(Array(body.utf8))
        var recipients = settings.to.joined(separator: ", ")
        if recipients.count > 900 { recipients = settings.to.joined(separator: ",\r\n ") }
        var lines = [
            "From: \(settings.from)",
            "To: \(recipients)",
            "Subject: \(encodeSubject(subject))",
            "Date: \(rfc5322Date(date))",
            "Message-ID: <\(id)>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: \(encoding)",
            // RFC 3834: an automatic message, which vacation responders leave unanswered.
            "Auto-Submitted: auto-generated",
            "",
        ]
        lines += bodyLines
        var wire: [UInt8] = []
        for line in lines.joined(separator: "\r\n").components(separatedBy: "\r\n") {
            if line.hasPrefix(".") { wire.append(UInt8(ascii: ".")) }
            wire += Array(line.utf8)
            wire += [13, 10]
        }
        wire += Array(".\r\n".utf8)
        return wire
    }

    /// 7bit when the text is plain ASCII in lines the standard allows (998 octets), quoted-printable otherwise.
    static func encodeBody(_ body: [UInt8]) -> (encoding: String, lines: [String]) {
        var lines = body.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line -> ArraySlice<UInt8> in
            line.last == 13 ? line.dropLast() : line
        }
        if lines.count > 1, lines.last?.isEmpty == true { lines.removeLast() }
        let plain = lines.allSatisfy { line in line.count <= 998 && line.allSatisfy { (1...127).contains($0) && $0 != 13 } }
        if plain { return ("7bit", lines.map { String(decoding: $0, as: UTF8.self) }) }
        return ("quoted-printable", lines.flatMap { quotedPrintable($0) })
    }

    /// One line as quoted-printable (RFC 2045): lines of at most 76 characters joined by soft breaks ("="),
    /// "=", controls, 8-bit bytes and a space or tab that ends the line as =XX.
    static func quotedPrintable(_ line: ArraySlice<UInt8>) -> [String] {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [String] = []
        var current: [UInt8] = []
        for (offset, byte) in line.enumerated() {
            let last = offset == line.count - 1
            let literal = ((33...126).contains(byte) && byte != UInt8(ascii: "=")) || ((byte == 32 || byte == 9) && !last)
            let token: [UInt8] = literal ? [byte] : [UInt8(ascii: "="), hex[Int(byte >> 4)], hex[Int(byte & 0x0f)]]
            if current.count + token.count > 75 {
                out.append(String(decoding: current + [UInt8(ascii: "=")], as: UTF8.self))
                current = []
            }
            current += token
        }
        out.append(String(decoding: current, as: UTF8.self))
        return out
    }

    /// The subject as is when it is printable ASCII; otherwise RFC 2047 encoded words (UTF-8, base64), each
    /// within 75 characters, on folded lines. Words split between code points: decoders join adjacent words.
    static func encodeSubject(_ subject: String) -> String {
        if subject.count <= 900, !subject.contains("=?"), subject.unicodeScalars.allSatisfy({ (0x20...0x7e).contains($0.value) }) {
            return subject
        }
        var words: [String] = []
        var chunk: [UInt8] = []
        func flush() {
            if !chunk.isEmpty { words.append("=?UTF-8?B?" + Data(chunk).base64EncodedString() + "?=") }
            chunk = []
        }
        for scalar in subject.unicodeScalars {
            let bytes = Array(String(scalar).utf8)
            if chunk.count + bytes.count > 45 { flush() }
            chunk += bytes
        }
        flush()
        return words.isEmpty ? "" : words.joined(separator: "\r\n ")
    }

    /// "Tue, 03 Mar 2026 14:05:09 +0000".
    static func rfc5322Date(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        return formatter.string(from: date)
    }
}
