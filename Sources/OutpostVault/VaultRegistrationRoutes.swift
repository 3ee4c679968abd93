import Crypto
import Foundation
import Hummingbird
import Logging
import OutpostCore
import OutpostHTTP
import OutpostObjects

/// The open routes a credentials file uses: registering a relay, and reading the key file a recovery file
/// re-attaches (docs/vault.md §7).
struct VaultRegistrationRoutes: Sendable {
    let settings: VaultConfiguration
    let registry: VaultRegistry
    let objects: any ObjectStore
    let logger: Logger

    func addRoutes(to router: Router<VaultRequestContext>) {
        router.post("/v1/register", use: register)
        router.post("/v1/recovery-key", use: recoveryKey)
    }

    @Sendable func register(_ request: Request, context: VaultRequestContext) async throws -> Response {
        let body = try await request.body.collect(upTo: 64 << 10)
        let req = try VaultAPI.decoder().decode(VaultAPI.RegisterRequest.self, from: Data(body.readableBytesView))
        // A recovery file hands over a container only to a relay that proves it holds the container's key: a
        // leaked recovery file alone must not let anyone cut the real relay off (docs/vault.md §6.2).
        var proven = false
        if case .success(let target) = try registry.recoveryTarget(secret: req.secret) {
            if let stored = try objects.get("containers/\(target.id)/\(Self.verifierObject)") {
                let given = req.proof.map { Hex.encode(Array(SHA256.hash(data: Array($0.utf8)))) } ?? ""
                guard Self.constantTimeEqual(Array(given.utf8), stored) else {
                    logger.warning("recovery refused: no proof of the container's key", metadata: ["relay": "\(target.id)"])
                    throw HTTPFailure(
                        .unauthorized,
                        "this rebuild does not prove it holds the key of relay \(RelayName.quoted(target.name))'s container: give that relay's passphrase (`outpost relay rebuild --passphrase-file`); nothing was changed and the recovery credentials file can still be used"
                    )
                }
                proven = true
            } else {
                logger.warning(
                    "container taken over without proof: it has no verifier yet (registered by an older relay)", metadata: ["relay": "\(target.id)"])
            }
        }
        switch try registry.register(secret: req.secret, relayName: req.relayName, maxRelays: settings.maxRelays, proven: proven) {
        case .registered(let relay, let credential):
            logger.info(
                "relay registered",
                metadata: [
                    "relay": "\(RelayName.printable(relay.name))", "id": "\(relay.id)",
                    "takeover": "\(relay.takeovers?.last.map { $0.proven ? "proven" : "unproven" } ?? "no")",
                ])
            let answer = VaultAPI.RegisterResponse(relayID: relay.id, credential: VaultAPI.credential(relayID: relay.id, secret: credential))
            return try .json(answer, encoder: VaultAPI.encoder())
        case .refused(let why):
            throw HTTPFailure(.unauthorized, why)
        case .invalidName(let why):
            throw HTTPFailure(.badRequest, why)
        case .nameTaken(let why):
            throw HTTPFailure(.conflict, why)
        }
    }

    /// The container object that holds the SHA-256 (hex) of its key's proof (`Registration.verifierObject`).
    static let verifierObject = "verifier"

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for (x, y) in zip(a, b) { diff |= x ^ y }
        return diff == 0
    }

    /// The newest key file of the container a recovery credentials file re-attaches, without spending the file:
    /// `relay rebuild` checks its passphrase with it before registering (registering replaces the lost relay's
    /// credential, so a wrong passphrase must be caught first). The key file is no more than the holder of that
    /// file could read after registering.
    @Sendable func recoveryKey(_ request: Request, context: VaultRequestContext) async throws -> Response {
        let body = try await request.body.collect(upTo: 64 << 10)
        let req = try VaultAPI.decoder().decode(VaultAPI.RecoveryKeyRequest.self, from: Data(body.readableBytesView))
        let relay: VaultRegistry.Relay
        switch try registry.recoveryTarget(secret: req.secret) {
        case .success(let r): relay = r
        case .failure(let refusal): throw HTTPFailure(.unauthorized, refusal.message)
        }
        let base = "containers/\(relay.id)/keys/"
        guard let newest = try objects.list(prefix: base).map(\.key).max(), let bytes = try objects.get(newest) else {
            throw HTTPFailure(
                .notFound, "the container of relay \(RelayName.quoted(relay.name)) holds no key file: it cannot be opened with a passphrase")
        }
        return .json(bytes: bytes)
    }
}
