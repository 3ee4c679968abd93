import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import OutpostCore
import OutpostHTTP
import OutpostTLS

/// HTTP(S) to one relay: pinned TLS, the machine's credential on every request, bounded bodies, and retries
/// with exponential backoff for transient failures (connection errors, 502/503/504).
public final class RelayClient: Sendable {
    let base: String
    let credential: String?
    let http: HTTPClient
    let logger: Logger
    let maxAttempts: Int
    /// Told of every retry, so that a person at a terminal knows what the command waits for.
    let notify: (@Sendable (String) -> Void)?

    /// Seconds a connection attempt may take; with `maxAttempts` and the backoff it bounds how long a command
    /// waits for a relay that does not answer (6 attempts: about 8 s when refused, about 38 s when timing out).
    public static let connectTimeoutSeconds: Int64 = 5

    public init(baseURL: String, credential: String?, tls: TLSConfiguration?, logger: Logger = Logger(label: "outpost.client"), maxAttempts: Int = 6,
                notify: (@Sendable (String) -> Void)? = nil) {
        base = DirectoryPath.normalized(baseURL)
        self.credential = credential
        self.logger = logger
        self.maxAttempts = max(1, maxAttempts)
        self.notify = notify
        var config = HTTPClient.Configuration(
            tlsConfiguration: tls,
            timeout: .init(connect: .seconds(Self.connectTimeoutSeconds), read: .seconds(300)),
            connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 16)
        )
        config.decompression = .disabled
        // Retries are ours (Retry, announced through `notify`): the pool's own would retry a refused connection
        // silently until the connect timeout, five times over.
        config.connectionPool.retryConnectionEstablishment = false
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    /// Connects with the configuration written at enrollment.
    public convenience init(configuration c: ClientConfiguration, logger: Logger = Logger(label: "outpost.client"),
                            notify: (@Sendable (String) -> Void)? = nil) throws {
        var tls: TLSConfiguration?
        if c.relay.hasPrefix("https://") {
            guard let pem = c.certificate else {
                throw ClientError(.config, "the client configuration names an https relay but holds no pinned certificate; enroll again")
            }
            do { tls = try TLSIdentity.pinnedClientConfiguration(certificatePEM: pem) } catch {
                throw ClientError(.config, "the certificate pinned in the client configuration cannot be used (\(error)); enroll again with `outpost enroll --fingerprint`")
            }
        }
        self.init(baseURL: c.relay, credential: c.credential, tls: tls, logger: logger, notify: notify)
    }

    public func close() async {
        try? await http.shutdown()
    }

    /// Sends a request and returns the body of a 2xx answer; maps every other outcome to a `ClientError`.
    public func call(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, contentType: String = "application/octet-stream",
                     authenticated: Bool = true, maxResponse: Int = 64 << 20) async throws -> [UInt8] {
        let base = self.base, logger = self.logger, notify = self.notify, attempts = maxAttempts
        return try await Retry.run(attempts: maxAttempts, onRetry: { attempt, reason, delay in
            logger.warning("relay unreachable, retrying", metadata: ["attempt": "\(attempt)", "reason": "\(reason)", "delay": "\(delay)"])
            notify?("waiting for the relay at \(base): \(reason); attempt \(attempt + 1) of \(attempts) in \(delay) s (Ctrl-C stops; nothing acknowledged is lost)")
        }, exhausted: { attempts, reason in
            ClientError(.unreachable, "the relay at \(base) could not be reached after \(attempts) attempts (\(reason)); check that it runs and that this machine can reach it, then run the command again — nothing already sent is sent twice")
        }) {
            try await once(method, path, body: body, contentType: contentType, authenticated: authenticated, maxResponse: maxResponse)
        }
    }


    private func once(_ method: HTTPMethod, _ path: String, body: [UInt8]?, contentType: String, authenticated: Bool, maxResponse: Int) async throws -> [UInt8] {
        var req = HTTPClientRequest(url: base + path)
        req.method = method
        if authenticated, let credential { req.headers.add(name: "Authorization", value: "Bearer " + credential) }
        if let body {
            req.headers.add(name: "Content-Type", value: contentType)
            req.body = .bytes(ByteBuffer(bytes: body))
        }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(req, timeout: .seconds(600), logger: logger)
        } catch let e as NIOSSLError {
            throw ClientError(.fingerprintMismatch, "the TLS connection to \(base) failed (\(e)): the relay's certificate is not the one pinned at enrollment; if the relay's certificate was replaced on purpose, enroll again")
        } catch let e as BoringSSLError {
            throw ClientError(.fingerprintMismatch, "the TLS connection to \(base) failed (\(e)): the relay's certificate is not the one pinned at enrollment; if the relay's certificate was replaced on purpose, enroll again")
        } catch {
            throw TransientFailure("\(error)")
        }
        let data: ByteBuffer
        do { data = try await response.body.collect(upTo: maxResponse) } catch { throw TransientFailure("the answer was cut off: \(error)") }
        let bytes = Array(buffer: data)
        let code = Int(response.status.code)
        if (200..<300).contains(code) { return bytes }
        let message = (try? RelayAPI.decoder().decode(RelayAPI.ErrorBody.self, from: Data(bytes)))?.message
            ?? String(decoding: bytes.prefix(500), as: UTF8.self)
        switch code {
        case 502, 503, 504: throw TransientFailure("HTTP \(code)")
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
        do { return try RelayAPI.decoder().decode(type, from: Data(bytes)) }
        catch { throw ClientError(.remote, "the relay at \(base) sent an answer this client does not understand (\(error)); check that relay and client versions match") }
    }
}

/// `outpost enroll`: fetch and pin the relay's certificate, trade the token for a credential.
public enum Enrollment {
    public static func enroll(relay url: String, token: String, expectedFingerprint: String?, logger: Logger,
                              notify: (@Sendable (String) -> Void)? = nil) async throws -> (ClientConfiguration, fingerprint: String?) {
        var certificate: String?
        var fingerprint: String?
        if url.hasPrefix("https://") {
            guard let (host, port) = PeerCertificate.endpoint(of: url) else {
                throw ClientError(.config, "the relay address \(url) is not a valid https://HOST:PORT address")
            }
            // The pin is the leaf certificate of the handshake itself, not a document the server sends.
            let der: [UInt8]
            do { der = try await PeerCertificate.leafDER(host: host, port: port) } catch {
                throw ClientError(.unreachable, "cannot read the relay's certificate at \(url) (\(error)); check the address and that `outpost relay serve` runs there")
            }
            let fp = TLSIdentity.fingerprint(ofDER: der)
            if let expected = expectedFingerprint, TLSIdentity.normalizeFingerprint(expected) != fp {
                throw ClientError(.fingerprintMismatch, "the relay at \(url) presents certificate \(fp), not the expected \(TLSIdentity.normalizeFingerprint(expected)); nothing was stored — check the address, or compare with `outpost relay fingerprint` on the relay")
            }
            certificate = try TLSIdentity.pem(ofDER: der)
            fingerprint = fp
        } else if !url.hasPrefix("http://") {
            throw ClientError(.config, "the relay address must start with https:// (or http:// for a relay run with --insecure-http), e.g. https://relay.branch.lan:8440")
        }
        let tls = try certificate.map { try TLSIdentity.pinnedClientConfiguration(certificatePEM: $0) }
        let client = RelayClient(baseURL: url, credential: nil, tls: tls, logger: logger, maxAttempts: 3, notify: notify)
        defer { Task { await client.close() } }
        let answer = try await client.postJSON(RelayAPI.EnrollResponse.self, "/v1/enroll", RelayAPI.EnrollRequest(token: token), authenticated: false)
        await client.close()
        return (ClientConfiguration(relay: url, machine: answer.machine, credential: answer.credential, fingerprint: fingerprint, certificate: certificate), fingerprint)
    }
}
