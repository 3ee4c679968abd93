import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import OutpostCore
import OutpostHTTP
import OutpostTLS

/// HTTP(S) to one relay: the pinned, retrying client (`PinnedHTTPClient`) with the machine's credential, the
/// relay's endpoints and the client's words for what goes wrong (docs/protocol.md §7).
public final class RelayClient: Sendable {
    let http: PinnedHTTPClient

    /// Seconds a connection attempt may take; with `maxAttempts` and the backoff it bounds how long a command
    /// waits for a relay that does not answer (6 attempts: about 8 s when refused, about 38 s when timing out).
    public static let connectTimeoutSeconds: Int64 = 5

    /// `notify` is told of every retry, so that a person at a terminal knows what the command waits for.
    public init(
        baseURL: String, credential: String?, tls: TLSConfiguration?, logger: Logger = Logger(label: "outpost.client"), maxAttempts: Int = 6,
        notify: (@Sendable (String) -> Void)? = nil
    ) {
        let base = DirectoryPath.normalized(baseURL), attempts = max(1, maxAttempts)
        let wording = PinnedHTTPClient.Wording(
            pinFailure: { base, error in
                ClientError(
                    .fingerprintMismatch,
                    "the TLS connection to \(base) failed (\(error)): the relay's certificate is not the one pinned at enrollment; if the relay's certificate was replaced on purpose, enroll again"
                )
            },
            unreachable: { base, attempts, reason in
                ClientError(
                    .unreachable,
                    "the relay at \(base) could not be reached after \(attempts) attempts (\(reason)); check that it runs and that this machine can reach it, then run the command again — nothing already sent is sent twice"
                )
            },
            retrying: { attempt, reason, delay in
                logger.warning("relay unreachable, retrying", metadata: ["attempt": "\(attempt)", "reason": "\(reason)", "delay": "\(delay)"])
                notify?(
                    "waiting for the relay at \(base): \(reason); attempt \(attempt + 1) of \(attempts) in \(delay) s (Ctrl-C stops; nothing acknowledged is lost)"
                )
            })
        http = PinnedHTTPClient(
            baseURL: baseURL, credential: credential, tls: tls, connectTimeout: .seconds(Self.connectTimeoutSeconds),
            readTimeout: .seconds(300), connectionsPerHost: 16, maxAttempts: attempts, logger: logger, wording: wording)
    }

    /// Connects with the configuration written at enrollment.
    public convenience init(
        configuration c: ClientConfiguration, logger: Logger = Logger(label: "outpost.client"),
        notify: (@Sendable (String) -> Void)? = nil
    ) throws {
        var tls: TLSConfiguration?
        if c.relay.hasPrefix("https://") {
            guard let pem = c.certificate else {
                throw ClientError(.config, "the client configuration names an https relay but holds no pinned certificate; enroll again")
            }
            do { tls = try TLSIdentity.pinnedClientConfiguration(certificatePEM: pem) } catch {
                throw ClientError(
                    .config,
                    "the certificate pinned in the client configuration cannot be used (\(error)); enroll again with `outpost enroll --fingerprint`")
            }
        }
        self.init(baseURL: c.relay, credential: c.credential, tls: tls, logger: logger, notify: notify)
    }

    var base: String { http.base }

    public func close() async {
        await http.close()
    }

    /// Sends a request and returns the body of a 2xx answer; maps every other outcome to a `ClientError`.
    public func call(
        _ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, bodyBuffer: ByteBuffer? = nil,
        contentType: String = "application/octet-stream", authenticated: Bool = true, maxResponse: Int = 64 << 20
    ) async throws -> [UInt8] {
        Array(
            buffer: try await callForBuffer(
                method, path, body: body, bodyBuffer: bodyBuffer, contentType: contentType, authenticated: authenticated, maxResponse: maxResponse))
    }

    /// The same, with the answer's body as received (a blob answer is read in place).
    public func callForBuffer(
        _ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, bodyBuffer: ByteBuffer? = nil,
        contentType: String = "application/octet-stream", authenticated: Bool = true, maxResponse: Int = 64 << 20
    ) async throws -> ByteBuffer {
        try await callForAnswer(
            method, path, body: body, bodyBuffer: bodyBuffer, contentType: contentType, authenticated: authenticated, maxResponse: maxResponse
        ).body
    }

    /// The same with request headers, and the answer's headers (a blob answer says how much came from the vault).
    public func callForAnswer(
        _ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, bodyBuffer: ByteBuffer? = nil,
        contentType: String = "application/octet-stream", authenticated: Bool = true, headers: [(String, String)] = [],
        maxResponse: Int = 64 << 20
    ) async throws -> (body: ByteBuffer, headers: HTTPHeaders) {
        var call = PinnedHTTPClient.Call(method, path, body: body, timeout: .seconds(600), maxResponse: maxResponse)
        call.bodyBuffer = bodyBuffer
        call.contentType = contentType
        call.authenticated = authenticated
        call.headers = headers
        let (code, answerHeaders, buffer) = try await http.sendForAnswer(call)
        if (200..<300).contains(code) { return (buffer, answerHeaders) }
        let message = PinnedHTTPClient.message(of: Array(buffer: buffer), limit: 500)
        switch code {
        case 401: throw ClientError(.unauthorized, "the relay refused this machine: \(message)")
        case 403: throw ClientError(.forbidden, "the relay refused access: \(message)")
        case 404: throw ClientError(.notFound, "the relay: \(message)")
        case 507: throw ClientError(.relayDiskFull, message)
        default: throw ClientError(.remote, "the relay answered \(code): \(message)")
        }
    }

    func getJSON<T: Decodable>(_ type: T.Type, _ path: String) async throws -> T {
        try decodeJSON(type, try await call(.GET, path))
    }

    func postJSON<T: Decodable>(_ type: T.Type, _ path: String, _ body: some Encodable, authenticated: Bool = true) async throws -> T {
        let data = Array(try RelayAPI.encoder().encode(body))
        return try decodeJSON(type, try await call(.POST, path, body: data, contentType: "application/json", authenticated: authenticated))
    }

    func decodeJSON<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        do { return try RelayAPI.decoder().decode(type, from: Data(bytes)) } catch {
            throw ClientError(
                .remote, "the relay at \(base) sent an answer this client does not understand (\(error)); check that relay and client versions match")
        }
    }
}

/// `outpost enroll`: fetch and pin the relay's certificate, trade the token for a credential.
public enum Enrollment {
    public static func enroll(
        relay url: String, token: String, expectedFingerprint: String?, logger: Logger,
        notify: (@Sendable (String) -> Void)? = nil
    ) async throws -> (ClientConfiguration, fingerprint: String?) {
        var certificate: String?
        var fingerprint: String?
        if url.hasPrefix("https://") {
            guard let (host, port) = PeerCertificate.endpoint(of: url) else {
                throw ClientError(.config, "the relay address \(url) is not a valid https://HOST:PORT address")
            }
            // The pin is the leaf certificate of the handshake itself, not a document the server sends.
            let der: [UInt8]
            do { der = try await PeerCertificate.leafDER(host: host, port: port) } catch {
                throw ClientError(
                    .unreachable,
                    "cannot read the relay's certificate at \(url) (\(error)); check the address and that `outpost relay serve` runs there")
            }
            let fp = TLSIdentity.fingerprint(ofDER: der)
            if let expected = expectedFingerprint, TLSIdentity.normalizeFingerprint(expected) != fp {
                throw ClientError(
                    .fingerprintMismatch,
                    "the relay at \(url) presents certificate \(fp), not the expected \(TLSIdentity.normalizeFingerprint(expected)); nothing was stored — check the address, or compare with `outpost relay fingerprint` on the relay"
                )
            }
            certificate = try TLSIdentity.pem(ofDER: der)
            fingerprint = fp
        } else if !url.hasPrefix("http://") {
            throw ClientError(
                .config,
                "the relay address must start with https:// (or http:// for a relay run with --insecure-http), e.g. https://relay.branch.lan:8440")
        }
        let tls = try certificate.map { try TLSIdentity.pinnedClientConfiguration(certificatePEM: $0) }
        let client = RelayClient(baseURL: url, credential: nil, tls: tls, logger: logger, maxAttempts: 3, notify: notify)
        defer { Task { await client.close() } }
        let answer = try await client.postJSON(RelayAPI.EnrollResponse.self, "/v1/enroll", RelayAPI.EnrollRequest(token: token), authenticated: false)
        await client.close()
        return (
            ClientConfiguration(
                relay: url, machine: answer.machine, credential: answer.credential, fingerprint: fingerprint, certificate: certificate), fingerprint
        )
    }
}
