import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import OutpostCore
import OutpostCrypto
import OutpostHTTP
import OutpostTLS
#if canImport(Glibc)
import Glibc
#endif

/// HTTPS to the vault: pinned certificate, the relay's credential, retries with backoff on transient failures.
public final class VaultClient: Sendable {
    let base: String
    let credential: String?
    let http: HTTPClient
    let logger: Logger
    let maxAttempts: Int

    public init(url: String, certificatePEM: String, credential: String?, proxy: ProxySettings? = nil, logger: Logger, maxAttempts: Int = 4) throws {
        base = DirectoryPath.normalized(url)
        self.credential = credential
        self.logger = logger
        self.maxAttempts = maxAttempts
        var config = HTTPClient.Configuration(tlsConfiguration: try TLSIdentity.pinnedClientConfiguration(certificatePEM: certificatePEM),
                                              timeout: .init(connect: .seconds(5), read: .seconds(120)))
        if let proxy {
            config.proxy = .server(host: proxy.host, port: proxy.port,
                                   authorization: proxy.user.map { .basic(username: $0, password: proxy.password ?? "") })
        }
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    public func close() async { try? await http.shutdown() }

    /// Returns (status, body) for 2xx and 404; throws for the rest.
    func call(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, throttle: Throttle? = nil, range: Range<Int>? = nil,
              max: Int = 80 << 20) async throws -> (Int, [UInt8]) {
        let base = self.base
        return try await Retry.run(attempts: maxAttempts, exhausted: { attempts, reason in
            ForwarderError(.unreachable, "the vault at \(base) could not be reached after \(attempts) attempts (\(reason)); forwarding resumes where it stopped once it is back")
        }) {
            try await once(method, path, body: body, throttle: throttle, range: range, max: max)
        }
    }

    private func once(_ method: HTTPMethod, _ path: String, body: [UInt8]?, throttle: Throttle?, range: Range<Int>?, max: Int) async throws -> (Int, [UInt8]) {
        var req = HTTPClientRequest(url: base + path)
        req.method = method
        if let credential { req.headers.add(name: "Authorization", value: "Bearer " + credential) }
        if let range { req.headers.add(name: "Range", value: "bytes=\(range.lowerBound)-\(range.upperBound - 1)") }
        if let body {
            req.headers.add(name: "Content-Type", value: "application/octet-stream")
            if let throttle {
                // Paced slice by slice as it goes out, so the limit holds within a large pack too.
                req.body = .stream(ThrottledBody(bytes: body, throttle: throttle), length: .known(Int64(body.count)))
            } else {
                req.body = .bytes(ByteBuffer(bytes: body))
            }
        }
        let resp: HTTPClientResponse
        // A throttled body takes as long as the limit makes it: the deadline allows for the slowest limit shared
        // by the forwarder's concurrent uploads.
        let deadline = 180 + (throttle == nil ? 0 : (body?.count ?? 0) * 4 / ThrottleSchedule.minimumRate)
        do { resp = try await http.execute(req, timeout: .seconds(Int64(deadline)), logger: logger) } catch let e as NIOSSLError {
            throw Self.pinFailure(e, base: base)
        } catch let e as BoringSSLError {
            // A handshake against the pinned certificate can fail with either type (which one depends on where
            // BoringSSL stops): both mean the vault's certificate is not the pinned one, never a retry.
            throw Self.pinFailure(e, base: base)
        } catch let e as HTTPClientError where e == .proxyAuthenticationRequired {
            throw ForwarderError(.refused, "the HTTP proxy refused the relay's proxy credentials (407): check proxy_user and proxy_password in relay.toml")
        } catch {
            throw TransientFailure("\(error)")
        }
        let bytes: [UInt8]
        do { bytes = Array(buffer: try await resp.body.collect(upTo: max)) } catch { throw TransientFailure("answer cut off: \(error)") }
        let code = Int(resp.status.code)
        if (200..<300).contains(code) || code == 404 { return (code, bytes) }
        let message = (try? JSONDecoder().decode([String: String].self, from: Data(bytes)))?["message"] ?? String(decoding: bytes.prefix(300), as: UTF8.self)
        switch code {
        case 502, 503, 504: throw TransientFailure("HTTP \(code)")
        case 401: throw ForwarderError(.credentials, "the vault refused this relay: \(message)")
        case 403, 409: throw ForwarderError(.refused, "the vault refused: \(message)")
        // Asked for bytes the object does not have: the relay recorded more than the vault holds.
        case 416: throw ForwarderError(.tampered, "vault object \(path.dropFirst("/v1/objects/".count)) is shorter than recorded (\(message)): damaged or tampered with in the vault")
        default: throw ForwarderError(.vault, "the vault answered \(code): \(message)")
        }
    }

    /// A TLS failure against the pinned certificate: said as the relay client says it, not retried.
    static func pinFailure(_ error: any Error, base: String) -> ForwarderError {
        ForwarderError(.refused, "the TLS connection to the vault at \(base) failed (\(error)): the vault's certificate is not the one pinned by the credentials file; if the vault's certificate was replaced on purpose, register again with a new credentials file")
    }

    /// Put-if-absent; true when the vault did not have it. With a throttle, the body is paced by it.
    public func put(_ key: String, _ bytes: [UInt8], throttle: Throttle? = nil) async throws -> Bool {
        let (code, _) = try await call(.PUT, "/v1/objects/" + key, body: bytes, throttle: throttle)
        return code == 201
    }

    public func get(_ key: String) async throws -> [UInt8]? {
        let (code, body) = try await call(.GET, "/v1/objects/" + key)
        return code == 404 ? nil : body
    }

    /// A byte range of an object (HTTP Range); nil when the object is missing.
    public func get(_ key: String, range: Range<Int>) async throws -> [UInt8]? {
        let (code, body) = try await call(.GET, "/v1/objects/" + key, range: range)
        if code == 404 { return nil }
        guard code == 206 else {
            throw ForwarderError(.vault, "the vault answered a range request for \(key) with HTTP \(code), not 206: it does not serve byte ranges (vault objects version 2 need them); upgrade the vault")
        }
        guard body.count == range.count else {
            throw ForwarderError(.tampered, "vault object \(key) is shorter than recorded (a range request got \(body.count) of \(range.count) bytes): damaged or tampered with in the vault")
        }
        return body
    }

    /// Soft delete (the vault keeps it for its soft-delete period); refused by an immutable vault.
    public func delete(_ key: String) async throws {
        _ = try await call(.DELETE, "/v1/objects/" + key)
    }

    public func list(prefix: String) async throws -> [VaultAPI.ObjectEntry] {
        let (_, body) = try await call(.GET, "/v1/list?prefix=" + prefix)
        return try JSONDecoder().decode([VaultAPI.ObjectEntry].self, from: Data(body))
    }

    /// The newest key file of the container a recovery credentials file re-attaches, read without spending the
    /// file; nil when the vault predates `POST /v1/recovery-key`.
    public func recoveryKey(secret: String) async throws -> [UInt8]? {
        let (code, body) = try await call(.POST, "/v1/recovery-key", body: Array(try JSONEncoder().encode(["secret": secret])))
        guard code == 404 else { return body }
        if let answer = try? JSONDecoder().decode([String: String].self, from: Data(body)), answer["error"] == "notFound" {
            throw ForwarderError(.vault, "the vault: \(answer["message"] ?? "the container holds no key file")")
        }
        return nil
    }

    public func register(secret: String, relayName: String) async throws -> VaultAPI.RegisterResponse {
        let (_, body) = try await call(.POST, "/v1/register", body: Array(try JSONEncoder().encode(VaultAPI.RegisterRequest(secret: secret, relayName: relayName))))
        return try JSONDecoder().decode(VaultAPI.RegisterResponse.self, from: Data(body))
    }
}
