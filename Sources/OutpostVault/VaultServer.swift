import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOHTTPTypes
import OutpostCore
import OutpostHTTP
import OutpostObjects
import OutpostTLS
import ServiceLifecycle
import UnixSignals

public struct VaultRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    var relay: VaultRegistry.Relay?
    public init(source: Source) { coreContext = .init(source: source) }
    public var maxUploadSize: Int { 64 << 20 }
}

/// The off-site vault: each registered relay reads and writes only its own container
/// (`containers/<relay id>/…`); deletes are soft (kept `softDeleteDays`), and refused on an immutable vault.
public struct VaultServer: Sendable {
    public let directory: VaultDataDirectory
    public let settings: VaultSettings
    public let registry: VaultRegistry
    public let objects: any ObjectStore
    public let identity: TLSIdentity
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
    public static let defaultLimits = ConnectionLimits(maxConnections: 256, headerTimeout: .seconds(20), requestDeadline: .seconds(4800),
                                                       minimumBodyRate: 1024, rateWindow: .seconds(60))
    /// PUT bodies in memory at once: two objects of the largest size, or sixteen of the forwarder's 8 MiB packs.
    public static let defaultPutBudget = 128 << 20

    public init(directory: VaultDataDirectory, host: String, port: Int, logger: Logger, limits: ConnectionLimits = VaultServer.defaultLimits,
                putBudget: Int = VaultServer.defaultPutBudget, onListening: @escaping @Sendable (Int) -> Void = { _ in }) throws {
        self.limits = limits
        self.putBudget = ByteBudget(bytes: putBudget)
        self.directory = directory
        settings = try directory.settings()
        registry = try VaultRegistry(path: directory.registryPath)
        objects = try directory.objectStore(settings)
        guard let cert = try? String(contentsOfFile: directory.certificatePath, encoding: .utf8),
              let key = try? String(contentsOfFile: directory.keyPath, encoding: .utf8) else {
            throw VaultError(.notAVault, "the vault's TLS certificate or key under \(directory.root)/tls cannot be read")
        }
        identity = TLSIdentity(certificatePEM: cert, privateKeyPEM: key)
        self.host = host
        self.port = port
        self.logger = logger
        self.onListening = onListening
    }

    public static let maxObjectBytes = 64 << 20

    public func buildRouter() -> Router<VaultRequestContext> {
        let router = Router(context: VaultRequestContext.self)
        router.add(middleware: VaultErrors(logger: logger))
        let settings = self.settings, registry = self.registry, objects = self.objects, logger = self.logger, putBudget = self.putBudget
        let pem = identity.certificatePEM
        router.get("/healthz") { _, _ in "ok\n" }
        router.get("/v1/certificate") { _, _ in Response(status: .ok, headers: [.contentType: "application/x-pem-file"], body: .init(byteBuffer: ByteBuffer(string: pem))) }
        router.post("/v1/register") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 64 << 10)
            let req = try JSONDecoder().decode(VaultAPI.RegisterRequest.self, from: Data(body.readableBytesView))
            switch try registry.register(secret: req.secret, relayName: req.relayName, maxRelays: settings.maxRelays) {
            case .registered(let relay, let credential):
                logger.info("relay registered", metadata: ["relay": "\(RelayName.printable(relay.name))", "id": "\(relay.id)"])
                let out = VaultAPI.RegisterResponse(relayID: relay.id, credential: VaultAPI.credential(relayID: relay.id, secret: credential))
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(out))))
            case .refused(let why):
                throw VaultFailure(.unauthorized, why)
            case .invalidName(let why):
                throw VaultFailure(.badRequest, why)
            case .nameTaken(let why):
                throw VaultFailure(.conflict, why)
            }
        }
        // The newest key file of the container a recovery credentials file re-attaches, without spending the
        // file: `relay rebuild` checks its passphrase with it before registering (registering replaces the lost
        // relay's credential, so a wrong passphrase must be caught first). The key file is no more than the
        // holder of that file could read after registering.
        router.post("/v1/recovery-key") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 64 << 10)
            let req = try JSONDecoder().decode(RecoveryKeyRequest.self, from: Data(body.readableBytesView))
            let relay: VaultRegistry.Relay
            switch try registry.recoveryTarget(secret: req.secret) {
            case .success(let r): relay = r
            case .failure(let refusal): throw VaultFailure(.unauthorized, refusal.message)
            }
            let base = "containers/\(relay.id)/keys/"
            guard let newest = try objects.list(prefix: base).map(\.key).max(), let bytes = try objects.get(newest) else {
                throw VaultFailure(.notFound, "the container of relay \(RelayName.quoted(relay.name)) holds no key file: it cannot be opened with a passphrase")
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        let api = router.group("v1").add(middleware: VaultAuthentication(registry: registry))
        @Sendable func key(_ context: VaultRequestContext) throws -> String {
            guard let relay = context.relay else { throw VaultFailure(.unauthorized, "this request needs a relay credential") }
            let rel = context.parameters.getCatchAll().joined(separator: "/")
            try ObjectKey.validate(rel)
            return "containers/\(relay.id)/\(rel)"
        }
        api.put("objects/**") { request, context -> Response in
            let k = try key(context)
            let declared = request.headers[.contentLength].flatMap { Int($0) }
            if let declared, declared > Self.maxObjectBytes {
                throw HTTPError(.contentTooLarge, message: "the object is \(declared) bytes, more than the vault accepts (\(Self.maxObjectBytes >> 20) MiB per object)")
            }
            // The body is read only once its bytes fit the budget: uploads beyond it wait, unread, so memory stays
            // bounded however many relays upload at once.
            let created = try await putBudget.withReservation(declared ?? Self.maxObjectBytes) {
                let body: ByteBuffer
                do { body = try await request.body.collect(upTo: Self.maxObjectBytes) } catch where !String(describing: type(of: error)).contains("TooManyBytes") {
                    // Cut off by the client or by the connection limits: the client's problem, not the vault's.
                    throw VaultFailure(.badRequest, "the request body was cut off (\(error))")
                }
                return try objects.putIfAbsent(k, Array(buffer: body))
            }
            return Response(status: created ? .created : .ok)
        }
        api.get("objects/**") { request, context -> Response in
            let k = try key(context)
            if let header = request.headers[.range] {
                // One range, "bytes=FIRST-LAST" (what the relay's tier-2 restore and rebuild ask for).
                guard let range = Self.parseRange(header) else {
                    throw VaultFailure(.badRequest, "unsupported Range header \"\(header.prefix(80))\": only a single \"bytes=FIRST-LAST\" range is served")
                }
                guard let bytes = try objects.get(k, range: range) else { throw VaultFailure(.notFound, "no such object in this relay's container") }
                if bytes.isEmpty { throw VaultFailure(.rangeNotSatisfiable, "the range \(range.lowerBound)-\(range.upperBound - 1) starts beyond the end of the object") }
                return Response(status: .partialContent, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
            }
            guard let bytes = try objects.get(k) else { throw VaultFailure(.notFound, "no such object in this relay's container") }
            return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        api.delete("objects/**") { _, context -> Response in
            if settings.immutable {
                throw VaultFailure(.forbidden, "this vault is immutable: nothing is deleted before its retention expires, whoever asks")
            }
            let k = try key(context)
            guard let bytes = try objects.get(k) else { return Response(status: .noContent) }
            // Soft delete: kept under trash/ with the deletion time for softDeleteDays, then purged.
            let stamp = Int(Date().timeIntervalSince1970)
            _ = try objects.putIfAbsent("trash/\(stamp)/\(k)", bytes)
            try objects.delete(k)
            return Response(status: .noContent)
        }
        api.get("list") { request, context -> Response in
            guard let relay = context.relay else { throw VaultFailure(.unauthorized, "this request needs a relay credential") }
            let prefix = request.uri.queryParameters.get("prefix") ?? ""
            let base = "containers/\(relay.id)/"
            let list = try objects.list(prefix: base + prefix).map { VaultAPI.ObjectEntry(key: String($0.key.dropFirst(base.count)), size: $0.size) }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(list))))
        }
        return router
    }

    /// "bytes=FIRST-LAST" as a range; nil for anything else. Both bounds are plain decimal digits (no sign, no
    /// space) that fit an Int, and LAST + 1 cannot overflow: a request never traps the vault (issue 8).
    static func parseRange(_ header: String) -> Range<Int>? {
        guard header.hasPrefix("bytes=") else { return nil }
        let parts = header.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 19 && $0.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }),
              let first = Int(parts[0]), let last = Int(parts[1]), last >= first, last < Int.max,
              last - first < maxObjectBytes else { return nil }
        return first..<(last + 1)
    }

    /// One connection's deadlines (header timeout, request deadline, minimum body rate) over Hummingbird's parts.
    static func deadlineHandler(_ limits: ConnectionLimits, logger: Logger) -> ConnectionDeadlineHandler<HTTPRequestPart, HTTPResponsePart> {
        ConnectionDeadlineHandler(limits: limits, classify: { part in
            switch part {
            case .head: .head
            case .body(let bytes): .body(bytes: bytes.readableBytes)
            case .end: .end
            }
        }, isResponseEnd: { part in
            if case .end = part { return true }
            return false
        }, onClose: { reason in
            logger.info("connection closed", metadata: ["reason": "\(reason)"])
        })
    }

    /// How often a running vault purges what outlived its soft-delete period.
    public static let purgeInterval: Duration = .seconds(3600)

    /// Purges soft-deleted objects and removed relays' containers older than the soft-delete period.
    public func purge(now: Date = Date()) throws -> Int {
        let cutoff = now.addingTimeInterval(-Double(settings.softDeleteDays) * 86400)
        var purged = 0
        for o in try objects.list(prefix: "trash/") {
            let parts = o.key.split(separator: "/")
            if parts.count > 1, let t = Double(parts[1]), t < cutoff.timeIntervalSince1970, !settings.immutable {
                try objects.delete(o.key); purged += 1
            }
        }
        for r in registry.relays where !settings.immutable && (r.removedAt.map({ $0 < cutoff }) ?? false) {
            for o in try objects.list(prefix: "containers/\(r.id)/") { try objects.delete(o.key); purged += 1 }
        }
        return purged
    }

    public func run() async throws {
        let limits = self.limits, logger = self.logger
        let http1 = HTTP1Channel.Configuration(
            additionalChannelHandlers: [Self.deadlineHandler(limits, logger: logger)],
            idleTimeout: .seconds(300))
        let server = try HTTPServerBuilder.tls(.http1(configuration: http1), tlsConfiguration: try identity.serverConfiguration())
        let onListening = self.onListening
        // At most `maxConnections` open; more wait in the listen backlog (not accepted, so they hold no descriptor).
        let app = Application(router: buildRouter(), server: server,
                              configuration: .init(address: .hostname(host, port: port), serverName: "outpost-vault",
                                                   availableConnectionsDelegate: .maximum(limits.maxConnections, logger: logger)),
                              onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) }, logger: logger)
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
            try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
            group.cancelAll()
        }
    }
}

/// The body of `POST /v1/recovery-key`.
struct RecoveryKeyRequest: Codable { var secret: String }

struct VaultAuthentication: RouterMiddleware {
    typealias Context = VaultRequestContext
    let registry: VaultRegistry
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let h = request.headers[.authorization], h.hasPrefix("Bearer "), let c = VaultAPI.parseCredential(String(h.dropFirst(7))) else {
            throw VaultFailure(.unauthorized, "missing or malformed relay credential: register the relay with `outpost relay register`")
        }
        guard let relay = registry.authenticate(relayID: c.relayID, secret: c.secret) else {
            throw VaultFailure(.unauthorized, "the relay credential is not valid (wrong, or the relay was removed from the vault)")
        }
        var ctx = context
        ctx.relay = relay
        return try await next(request, ctx)
    }
}

public struct VaultFailure: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable { case badRequest, unauthorized, forbidden, notFound, conflict, rangeNotSatisfiable }
    public let kind: Kind
    public let message: String
    public init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }
    public var description: String { message }
}

struct VaultErrors: RouterMiddleware {
    typealias Context = VaultRequestContext
    let logger: Logger
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        func answer(_ status: HTTPResponse.Status, _ code: String, _ message: String) -> Response {
            let body = (try? JSONEncoder().encode(["error": code, "message": message])) ?? Data()
            return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
        do {
            return try await next(request, context)
        } catch let f as VaultFailure {
            switch f.kind {
            case .badRequest: return answer(.badRequest, "badRequest", f.message)
            case .unauthorized: return answer(.unauthorized, "unauthorized", f.message)
            case .forbidden: return answer(.forbidden, "forbidden", f.message)
            case .notFound: return answer(.notFound, "notFound", f.message)
            case .conflict: return answer(.conflict, "conflict", f.message)
            case .rangeNotSatisfiable: return answer(.rangeNotSatisfiable, "rangeNotSatisfiable", f.message)
            }
        } catch let e as ObjectStoreError {
            switch e.code {
            case .invalidKey: return answer(.badRequest, "invalidKey", e.message)
            case .diskFull: return answer(HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"), "diskFull", "the vault's disk is full")
            case .io: logger.error("storage failure", metadata: ["error": "\(e.message)"]); return answer(.internalServerError, "io", "the vault could not store or read the object")
            default:
                // Another layer's error (registry, settings): as before, an unexpected failure.
                logger.error("unexpected failure", metadata: ["error": "\(e)"])
                return answer(.internalServerError, "internal", "\(e)")
            }
        } catch let e as HTTPError {
            return answer(e.status, "http", e.body ?? e.status.reasonPhrase)
        } catch let e as DecodingError {
            return answer(.badRequest, "badRequest", "malformed request body: \(e)")
        } catch where String(describing: type(of: error)).contains("TooManyBytes") {
            return answer(.contentTooLarge, "tooLarge", "the request body is larger than the vault accepts (\(VaultServer.maxObjectBytes >> 20) MiB per object)")
        } catch {
            logger.error("unexpected failure", metadata: ["error": "\(error)"])
            return answer(.internalServerError, "internal", "\(error)")
        }
    }
}
