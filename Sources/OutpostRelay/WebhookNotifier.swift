import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import OutpostCore

/// Where the relay POSTs its alerts, and the secret that signs them (relay.toml's webhook settings).
public struct WebhookSettings: Sendable, Equatable {
    /// An http or https URL. Messages name only its scheme, host and port: the path often holds a token.
    public var url: String
    /// The HMAC-SHA256 key the receiver checks `X-Outpost-Signature` with.
    public var secret: String
    /// How long one attempt may take, connection and answer included.
    public var timeout: Duration
    /// A PEM file of a CA (or a self-signed certificate) trusted besides the system's roots, for an https
    /// receiver with a private certificate.
    public var caCertificatePath: String?

    public init(url: String, secret: String, timeout: Duration = .seconds(10), caCertificatePath: String? = nil) {
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.caCertificatePath = caCertificatePath
    }

    /// Refuses what no attempt could get past: a URL that is not http(s) or has no host, an empty secret, a
    /// CA file that is not there. The configuration check and every attempt call it.
    public func validate() throws {
        _ = try endpoint()
        guard !secret.isEmpty else {
            throw AlertDeliveryError.permanent(
                .config,
                "the webhook secret for \(try endpoint().target) is empty: put a long random secret in webhook_secret_file and give the receiver the same one"
            )
        }
        if let path = caCertificatePath, !FileManager.default.isReadableFile(atPath: path) {
            throw AlertDeliveryError.permanent(
                .config, "the CA certificate \(path) for \(try endpoint().target) cannot be read: set webhook_ca_file to a readable PEM file")
        }
    }

    /// The URL's scheme and how messages name it ("the webhook at https://host:port").
    func endpoint() throws -> (https: Bool, target: String) {
        guard let parts = URLComponents(string: url), let scheme = parts.scheme?.lowercased(), let host = parts.host, !host.isEmpty
        else {
            throw AlertDeliveryError.permanent(
                .config,
                "the webhook URL \"\(printableExcerpt(url, limit: 100))\" is not a valid URL: set webhook_url to an http:// or https:// address")
        }
        guard scheme == "http" || scheme == "https" else {
            throw AlertDeliveryError.permanent(
                .config, "the webhook URL uses \"\(scheme):\", which Outpost does not send to: set webhook_url to an http:// or https:// address")
        }
        let shownHost = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        return (scheme == "https", "the webhook at \(scheme)://\(shownHost)" + (parts.port.map { ":\($0)" } ?? ""))
    }
}

/// Delivers an alert to a webhook: one signed JSON POST per call. Retrying is the delivery queue's business;
/// the thrown `AlertDeliveryError` says whether a retry can help.
///
/// The receiver can check that the alert comes from this relay and is fresh: `X-Outpost-Signature` is
/// `sha256=` and the hex HMAC-SHA256, keyed with the shared secret, of `X-Outpost-Timestamp`, a dot and the
/// body's exact bytes (docs/alerts.md, "Delivery").
public struct WebhookNotifier: Sendable {
    public let settings: WebhookSettings
    let http: HTTPClient

    /// `httpClient` is the caller's, shut down by the caller. It should not follow redirects
    /// (`redirectConfiguration = .disallow`), so that a moved receiver shows as the permanent failure it is.
    public init(settings: WebhookSettings, httpClient: HTTPClient) {
        self.settings = settings
        self.http = httpClient
    }

    /// Posts `body` (JSON) once. 2xx is delivered; 408, 429, 5xx, a connection failure or a time-out throw a
    /// temporary error; any other answer, a bad URL or an untrusted certificate a permanent one.
    public func post(_ body: [UInt8], eventID: String, now: Date = Date()) async throws {
        try settings.validate()
        let (https, target) = try settings.endpoint()
        guard !eventID.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw AlertDeliveryError.permanent(.invalid, "the alert's event id holds a control character; it was not sent to \(target)")
        }
        let timestamp = Int(now.timeIntervalSince1970.rounded(.down))
        var request = HTTPClientRequest(url: settings.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "outpost/\(OutpostVersion.string)")
        request.headers.add(name: "X-Outpost-Event", value: eventID)
        request.headers.add(name: "X-Outpost-Timestamp", value: String(timestamp))
        request.headers.add(name: "X-Outpost-Signature", value: Self.signature(secret: settings.secret, timestamp: timestamp, body: body))
        request.body = .bytes(ByteBuffer(bytes: body))
        if https, let ca = settings.caCertificatePath {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.minimumTLSVersion = .tlsv12
            tls.additionalTrustRoots = [.file(ca)]
            request.tlsConfiguration = tls
        }

        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: TimeAmount(settings.timeout))
        } catch {
            throw Self.failure(error, target: target, timeout: settings.timeout)
        }
        let status = Int(response.status.code)
        // Read what came back: a 2xx body frees the connection, an error body explains the refusal.
        let answer = (try? await response.body.collect(upTo: 16 << 10)).map { String(buffer: $0) } ?? ""
        if (200..<300).contains(status) { return }
        let said = answer.isEmpty ? "" : ": \(printableExcerpt(answer))"
        switch status {
        case 408, 429, 500..<600:
            throw AlertDeliveryError.temporary(
                .remote, "\(target) answered HTTP \(status)\(said); the alert stays queued and is sent again later")
        case 300..<400:
            let location = response.headers.first(name: "Location").map { " to \(printableExcerpt($0, limit: 100))" } ?? ""
            throw AlertDeliveryError.permanent(
                .refused, "\(target) answered HTTP \(status) (a redirect\(location)): set webhook_url to the receiver's final address")
        case 401, 403:
            throw AlertDeliveryError.permanent(
                .unauthorized,
                "\(target) refused the alert with HTTP \(status)\(said): check that the receiver holds the same secret as webhook_secret_file")
        default:
            throw AlertDeliveryError.permanent(
                .refused, "\(target) refused the alert with HTTP \(status)\(said): check webhook_url and what the receiver accepts")
        }
    }

    /// `sha256=` and the lowercase hex HMAC-SHA256, keyed with `secret`, of "TIMESTAMP." followed by `body`.
    public static func signature(secret: String, timestamp: Int, body: [UInt8]) -> String {
        var mac = HMAC<SHA256>(key: SymmetricKey(data: Array(secret.utf8)))
        mac.update(data: Array("\(timestamp).".utf8))
        mac.update(data: body)
        return "sha256=" + Hex.encode(Array(mac.finalize()))
    }

    /// A failed exchange as a delivery error: certificate trouble is permanent, the rest (refused, reset,
    /// timed out) temporary.
    static func failure(_ error: any Error, target: String, timeout: Duration) -> AlertDeliveryError {
        if let e = error as? HTTPClientError,
            [.deadlineExceeded, .readTimeout, .writeTimeout, .connectTimeout, .tlsHandshakeTimeout, .getConnectionFromPoolTimeout].contains(e)
        {
            return .temporary(.unreachable, "\(target) did not answer within \(timeout); the alert stays queued and is sent again later")
        }
        if let tls = TLSFailure(error) {
            return tls.permanent
                ? .permanent(
                    .tls,
                    "the TLS handshake with \(target) failed (\(tls.detail)): \(tls.fix(caSetting: "webhook_ca_file", portHint: "check that webhook_url's host and port serve https"))"
                )
                : .temporary(.unreachable, "the TLS connection to \(target) was cut (\(tls.detail)); the alert stays queued and is sent again later")
        }
        return .temporary(
            .unreachable, "could not deliver to \(target) (\(printableExcerpt("\(error)"))); the alert stays queued and is sent again later")
    }
}

/// A TLS error from NIOSSL, sorted: a certificate that is not trusted or does not name the host stays so until
/// the configuration changes; a connection cut during the handshake may pass on the next attempt.
struct TLSFailure {
    let permanent: Bool
    let detail: String
    /// The certificate was refused (rather than the handshake failing, as with a server that does not speak TLS).
    let certificate: Bool

    /// What to do about it: `caSetting` names the extra CA's setting, `portHint` what to check when the far
    /// end does not speak TLS at all.
    func fix(caSetting: String, portHint: String) -> String {
        certificate
            ? "the server's certificate is not trusted or does not name the host. If the server uses a self-signed or private-CA "
                + "certificate, set \(caSetting) to that CA's PEM file; check that the certificate names the host in the configuration"
            : "the server does not speak TLS there as expected: \(portHint)"
    }

    init?(_ error: any Error) {
        if let e = error as? NIOSSLError {
            switch e {
            case .uncleanShutdown, .readInInvalidTLSState, .writeDuringTLSShutdown, .handshakeFailed(.syscallError),
                .handshakeFailed(.zeroReturn):
                permanent = false
            default: permanent = true
            }
        } else if error is BoringSSLError || error is NIOSSLExtraError {
            permanent = true
        } else {
            return nil
        }
        detail = printableExcerpt("\(error)", limit: 300)
        certificate = error is NIOSSLExtraError || detail.uppercased().contains("CERTIFICATE")
    }
}
