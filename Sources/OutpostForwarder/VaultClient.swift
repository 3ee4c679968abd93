import Foundation
import Logging
import NIOCore
import NIOHTTP1
import OutpostCore
import OutpostHTTP
import OutpostTLS

/// HTTPS to the vault: the pinned, retrying client (`PinnedHTTPClient`) with the relay's credential, the vault's
/// endpoints and the forwarder's words for what goes wrong (docs/vault.md §7.4).
public final class VaultClient: Sendable {
    let http: PinnedHTTPClient

    public init(url: String, certificatePEM: String, credential: String?, proxy: ProxyConfiguration? = nil, logger: Logger, maxAttempts: Int = 4)
        throws
    {
        let wording = PinnedHTTPClient.Wording(
            pinFailure: { base, error in
                Self.pinFailure(error, base: base)
            },
            unreachable: { base, attempts, reason in
                ForwarderError(
                    .unreachable,
                    "the vault at \(base) could not be reached after \(attempts) attempts (\(reason)); forwarding resumes where it stopped once it is back"
                )
            },
            proxyRefused: {
                ForwarderError(
                    .refused, "the HTTP proxy refused the relay's proxy credentials (407): check proxy_user and proxy_password in relay.toml")
            })
        http = PinnedHTTPClient(
            baseURL: url, credential: credential, tls: try TLSIdentity.pinnedClientConfiguration(certificatePEM: certificatePEM),
            proxy: proxy, readTimeout: .seconds(120), maxAttempts: maxAttempts, logger: logger, wording: wording)
    }

    public func close() async { await http.close() }

    /// Returns (status, body) for 2xx and 404; throws for the rest.
    func call(
        _ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, throttle: Throttle? = nil, range: Range<Int>? = nil,
        max: Int = 80 << 20
    ) async throws -> (Int, [UInt8]) {
        // A throttled body takes as long as the limit makes it: the deadline allows for the slowest limit shared
        // by the forwarder's concurrent uploads.
        let deadline = 180 + (throttle == nil ? 0 : (body?.count ?? 0) * 4 / ThrottleSchedule.minimumRate)
        var call = PinnedHTTPClient.Call(method, path, body: body, timeout: .seconds(Int64(deadline)), maxResponse: max)
        call.throttle = throttle
        call.range = range
        let (code, bytes) = try await http.send(call)
        if (200..<300).contains(code) || code == 404 { return (code, bytes) }
        let message = PinnedHTTPClient.message(of: bytes, limit: 300)
        switch code {
        case 401: throw ForwarderError(.credentials, "the vault refused this relay: \(message)")
        case 403, 409: throw ForwarderError(.refused, "the vault refused: \(message)")
        // Asked for bytes the object does not have: the relay recorded more than the vault holds.
        case 416:
            throw ForwarderError(
                .tampered,
                "vault object \(path.dropFirst("/v1/objects/".count)) is shorter than recorded (\(message)): damaged or tampered with in the vault")
        default: throw ForwarderError(.vault, "the vault answered \(code): \(message)")
        }
    }

    /// A TLS failure against the pinned certificate: said as the relay client says it, not retried.
    static func pinFailure(_ error: any Error, base: String) -> ForwarderError {
        ForwarderError(
            .refused,
            "the TLS connection to the vault at \(base) failed (\(error)): the vault's certificate is not the one pinned by the credentials file; if the vault's certificate was replaced on purpose, register again with a new credentials file"
        )
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
            throw ForwarderError(
                .vault,
                "the vault answered a range request for \(key) with HTTP \(code), not 206: it does not serve byte ranges (vault objects version 2 need them); upgrade the vault"
            )
        }
        guard body.count == range.count else {
            throw ForwarderError(
                .tampered,
                "vault object \(key) is shorter than recorded (a range request got \(body.count) of \(range.count) bytes): damaged or tampered with in the vault"
            )
        }
        return body
    }

    /// Soft delete (the vault keeps it for its soft-delete period); refused by an immutable vault.
    public func delete(_ key: String) async throws {
        _ = try await call(.DELETE, "/v1/objects/" + key)
    }

    public func list(prefix: String) async throws -> [VaultAPI.ObjectEntry] {
        let (_, body) = try await call(.GET, "/v1/list?prefix=" + prefix)
        return try VaultAPI.decoder().decode([VaultAPI.ObjectEntry].self, from: Data(body))
    }

    /// The newest key file of the container a recovery credentials file re-attaches, read without spending the
    /// file; nil when the vault predates `POST /v1/recovery-key`.
    public func recoveryKey(secret: String) async throws -> [UInt8]? {
        let (code, body) = try await call(
            .POST, "/v1/recovery-key", body: Array(try VaultAPI.encoder().encode(VaultAPI.RecoveryKeyRequest(secret: secret))))
        guard code == 404 else { return body }
        if let answer = try? VaultAPI.decoder().decode(HTTPErrorBody.self, from: Data(body)), answer.error == "notFound" {
            throw ForwarderError(.vault, "the vault: \(answer.message)")
        }
        return nil
    }

    /// Sends the relay's status record for the vault's fleet view (`POST /v1/status`); false when the vault
    /// predates it (404).
    public func sendStatus(_ record: RelayStatusRecord) async throws -> Bool {
        let (code, _) = try await call(.POST, "/v1/status", body: try record.encoded())
        return code != 404
    }

    public func register(secret: String, relayName: String, proof: String? = nil) async throws -> VaultAPI.RegisterResponse {
        let (_, body) = try await call(
            .POST, "/v1/register",
            body: Array(try VaultAPI.encoder().encode(VaultAPI.RegisterRequest(secret: secret, relayName: relayName, proof: proof))))
        return try VaultAPI.decoder().decode(VaultAPI.RegisterResponse.self, from: Data(body))
    }
}
