import Foundation
import Hummingbird
import Logging
import OutpostCore
import OutpostHTTP
import OutpostObjects
import OutpostTLS
import ServiceLifecycle

/// Per-request state: the relay the credential belongs to, once authenticated.
public struct VaultRequestContext: BearerContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: VaultRegistry.Relay?
    public init(source: Source) { coreContext = .init(source: source) }
    public var maxUploadSize: Int { 64 << 20 }
    public static let credentialRequired = "this request needs a relay credential"
}

/// The off-site vault: each registered relay reads and writes only its own container
/// (`containers/<relay id>/…`); deletes are soft (kept `softDeleteDays`), and refused on an immutable vault.
public struct VaultServer: Sendable {
    public let directory: VaultDataDirectory
    public let settings: VaultConfiguration
    public let registry: VaultRegistry
    public let objects: any ObjectStore
    public let identity: TLSIdentity
    /// GRS only: replays and reports what the secondary copy set missed.
    public let replica: ReplicaMonitor?
    let host: String
    let port: Int
    let logger: Logger
    let onListening: @Sendable (Int) -> Void
    public let limits: ConnectionLimits
    /// Bytes of PUT bodies held in memory at once (see `putBudget`).
    let putBudget: ByteBudget

    /// The vault's connection limits (issue 8). Relays' forwarders keep at most a few connections each, well
    /// under the cap for the 50 relays a vault serves; the deadline allows the slowest throttled upload of the
    /// largest object (512 Kbit/s shared by 4 uploads: about 73 minutes for 64 MiB), and the minimum rate is far
    /// below what that limit gives each upload (16 KB/s).
    public static let defaultLimits = ConnectionLimits(
        maxConnections: 256, headerTimeout: .seconds(20), requestDeadline: .seconds(4800),
        minimumBodyRate: 1024, rateWindow: .seconds(60))
    /// PUT bodies in memory at once: two objects of the largest size, or sixteen of the forwarder's 8 MiB packs.
    public static let defaultPutBudget = 128 << 20

    public init(
        directory: VaultDataDirectory, host: String, port: Int, logger: Logger, limits: ConnectionLimits = VaultServer.defaultLimits,
        putBudget: Int = VaultServer.defaultPutBudget, onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) throws {
        self.limits = limits
        self.putBudget = ByteBudget(bytes: putBudget)
        self.directory = directory
        settings = try directory.settings()
        objects = try directory.objectStore(settings)
        registry = try directory.registry(settings, objects: objects)
        replica = (objects as? ReplicatedObjectStore).map { ReplicaMonitor(store: $0, logger: logger) }
        guard let cert = try? String(contentsOfFile: directory.certificatePath, encoding: .utf8),
            let key = try? String(contentsOfFile: directory.keyPath, encoding: .utf8)
        else {
            throw VaultError(.notAVault, "the vault's TLS certificate or key under \(directory.root)/tls cannot be read")
        }
        identity = TLSIdentity(certificatePEM: cert, privateKeyPEM: key)
        self.host = host
        self.port = port
        self.logger = logger
        self.onListening = onListening
    }

    public static let maxObjectBytes = 64 << 20

    /// Every route of the vault (docs/vault.md §7): the open ones, registration, and a relay's own objects.
    public func buildRouter() -> Router<VaultRequestContext> {
        let router = Router(context: VaultRequestContext.self)
        // First: it sees the status the error middleware answers with (docs/metrics.md).
        router.add(middleware: RequestMetricsMiddleware())
        router.add(middleware: Self.errors(logger: logger))
        ServiceRoutes(certificatePEM: identity.certificatePEM).addRoutes(to: router)
        VaultRegistrationRoutes(settings: settings, registry: registry, objects: objects, logger: logger).addRoutes(to: router)
        let registry = self.registry
        let relay = router.group("v1").add(
            middleware: BearerAuthentication<VaultRequestContext>(
                malformed: "missing or malformed relay credential: register the relay with `outpost relay register`"
            ) { token in
                guard let credential = VaultAPI.parseCredential(token) else { return nil }
                guard let relay = try registry.authenticate(relayID: credential.relayID, secret: credential.secret) else {
                    throw HTTPFailure(.unauthorized, "the relay credential is not valid (wrong, or the relay was removed from the vault)")
                }
                return relay
            })
        VaultObjectRoutes(settings: settings, registry: registry, objects: objects, putBudget: putBudget).addRoutes(to: relay)
        // Each relay's status record, for the fleet view (docs/vault.md §20).
        VaultStatusRoutes(objects: objects, logger: logger).addRoutes(to: relay)
        return router
    }

    /// The vault's answers to failures (docs/vault.md §7.4): the object store's own, worded for the relay.
    static func errors(logger: Logger) -> ErrorMiddleware<VaultRequestContext> {
        let wording = ErrorMiddleware<VaultRequestContext>.Wording(
            tooLarge: "the request body is larger than the vault accepts (\(VaultServer.maxObjectBytes >> 20) MiB per object)",
            malformedBody: "malformed request body")
        return ErrorMiddleware(logger: logger, wording: wording) { error in
            guard let e = error as? ObjectStoreError else { return nil }
            switch e.code {
            case .invalidKey: return HTTPFailure(e)
            case .diskFull: return HTTPFailure(e, message: "the vault's disk is full")
            case .io:
                logger.error("storage failure", metadata: ["error": "\(e.message)"])
                return HTTPFailure(e, message: "the vault could not store or read the object")
            default:
                // Another layer's error (the object store's backend, the registry): logged in full, answered
                // without its text, which can name the storage endpoint, its access key id or a file's path.
                logger.error("vault failure", metadata: ["error": "\(e.message)", "code": "\(e.code)"])
                return HTTPFailure(
                    status: .internalServerError, code: "internal",
                    message: "the vault could not serve this request; its operator finds the reason in the vault's log")
            }
        }
    }

    /// How often a running vault purges what outlived its soft-delete period.
    public static let purgeInterval: Duration = .seconds(3600)

    /// Purges soft-deleted objects and removed relays' containers older than the soft-delete period.
    public func purge(now: Date = Date()) throws -> Int {
        let policy = registry.policy(default: settings)
        let cutoff = now.addingTimeInterval(-Double(policy.softDeleteDays) * 86400)
        var purged = 0
        for o in try objects.list(prefix: "trash/") {
            let parts = o.key.split(separator: "/")
            if parts.count > 1, let t = Double(parts[1]), t < cutoff.timeIntervalSince1970, !policy.immutable {
                try objects.delete(o.key); purged += 1
            }
        }
        for r in registry.relays where !policy.immutable && (r.removedAt.map({ $0 < cutoff }) ?? false) {
            for o in try objects.list(prefix: "containers/\(r.id)/") { try objects.delete(o.key); purged += 1 }
            purged += try RelayStatusStore(objects: objects).remove(relay: r.id)
        }
        return purged
    }

    /// `services` run beside the server and stop with it (the metrics listener).
    public func run(services: [any Service] = []) async throws {
        // At most `maxConnections` open; more wait in the listen backlog (not accepted, so they hold no descriptor).
        let server = HTTPServer(
            name: "outpost-vault", host: host, port: port, identity: identity, idleTimeout: .seconds(300),
            maxConnections: limits.maxConnections, connectionLimits: limits)
        let router = buildRouter()
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                // Soft-deleted objects and removed relays' containers go once their period is over, also on a
                // vault that runs for months without a restart.
                while !Task.isCancelled {
                    // Listing and deleting files blocks: on a thread of its own, not on the (small) task pool
                    // that serves requests.
                    let outcome: Result<Int, any Error> = await withCheckedContinuation { done in
                        Thread { done.resume(returning: Result { try self.purge() }) }.start()
                    }
                    switch outcome {
                    case .success(let n) where n > 0: self.logger.info("purged soft-deleted objects", metadata: ["objects": "\(n)"])
                    case .success: break
                    case .failure(let error): self.logger.error("purge failed; retried at the next interval", metadata: ["error": "\(error)"])
                    }
                    try? await Task.sleep(for: Self.purgeInterval)
                }
            }
            if let replica {
                group.addTask {
                    // A secondary that missed writes gets them when it is back (docs/vault.md §3.1); on a thread of
                    // its own, as the purge.
                    while !Task.isCancelled {
                        await withCheckedContinuation { done in
                            Thread {
                                replica.round()
                                done.resume()
                            }.start()
                        }
                        try? await Task.sleep(for: ReplicaMonitor.interval)
                    }
                }
            }
            try await server.run(router, services: services, logger: logger, onListening: onListening)
            group.cancelAll()
        }
    }
}
