import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import OutpostCore
import OutpostHTTP
import OutpostStore
import OutpostTLS
import ServiceLifecycle
import UnixSignals

/// Per-request state: the machine the credential belongs to, once authenticated.
public struct RelayRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    var machineID: Int64?
    var machineName: String?

    public init(source: Source) { coreContext = .init(source: source) }

    public var maxUploadSize: Int { WireFormat.maxUploadBytes + (1 << 20) }

    func machine() throws -> (Int64, String) {
        guard let id = machineID, let name = machineName else { throw RelayFailure(.unauthorized, "this request needs a machine credential") }
        return (id, name)
    }
}

/// The relay's HTTPS server: routes of protocol v1 (docs/protocol.md), authentication, error mapping.
public struct RelayServer {
    public let relay: Relay
    public let identity: TLSIdentity?
    public let host: String
    public let port: Int
    let logger: Logger
    /// Called with the bound port once the server listens (port 0 picks a free one).
    let onListening: @Sendable (Int) -> Void
    let services: [any Service]

    public init(relay: Relay, identity: TLSIdentity?, host: String, port: Int, logger: Logger, services: [any Service] = [],
                onListening: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.relay = relay
        self.services = services
        self.identity = identity
        self.host = host
        self.port = port
        self.logger = logger
        self.onListening = onListening
    }

    /// One endpoint of protocol v1. Every route is registered from `routes`, and a test checks this table
    /// against openapi/relay.yaml, so the document cannot drift from the server.
    public struct Route: Sendable, Hashable {
        public let method: String
        public let path: String
        public let authenticated: Bool
    }

    public static let routes: [Route] = [
        Route(method: "GET", path: "/healthz", authenticated: false),
        Route(method: "GET", path: "/v1/certificate", authenticated: false),
        Route(method: "POST", path: "/v1/enroll", authenticated: false),
        Route(method: "GET", path: "/v1/session", authenticated: true),
        Route(method: "POST", path: "/v1/chunks/missing", authenticated: true),
        Route(method: "POST", path: "/v1/chunks", authenticated: true),
        Route(method: "POST", path: "/v1/points", authenticated: true),
        Route(method: "GET", path: "/v1/points", authenticated: true),
        Route(method: "POST", path: "/v1/blobs", authenticated: true),
    ]

    typealias Handler = @Sendable (Request, RelayRequestContext) async throws -> Response

    func handlers() -> [Route: Handler] {
        let relay = self.relay
        let certificatePEM = identity?.certificatePEM
        func route(_ method: String, _ path: String) -> Route {
            Self.routes.first { $0.method == method && $0.path == path }!
        }
        return [
            route("GET", "/healthz"): { _, _ in
                Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
            },
            route("GET", "/v1/certificate"): { _, _ in
                guard let pem = certificatePEM else { throw RelayFailure(.notFound, "this relay serves plain HTTP and has no certificate") }
                return Response(status: .ok, headers: [.contentType: "application/x-pem-file"], body: .init(byteBuffer: ByteBuffer(string: pem)))
            },
            route("POST", "/v1/enroll"): { request, _ in
                let body = try await relay.limits.collect(request.body, upTo: 64 << 10, what: "enrollment request")
                let req = try decode(RelayAPI.EnrollRequest.self, body)
                let secret = RelayAPI.randomSecret()
                switch try relay.catalog.enroll(token: req.token, credential: secret) {
                case .success(let name):
                    relay.logger.info("machine enrolled", metadata: ["machine": "\(name)"])
                    return try json(RelayAPI.EnrollResponse(machine: name, credential: RelayAPI.credential(machine: name, secret: secret)))
                case .failure(let why):
                    let text = switch why {
                    case .unknown: "this enrollment token is not known to the relay; ask the relay's operator for a new one (`outpost relay add-machine`)"
                    case .used: "this enrollment token was already used; ask the relay's operator for a new one"
                    case .expired: "this enrollment token has expired; ask the relay's operator for a new one"
                    case .taken: "the machine name is taken"
                    }
                    throw RelayFailure(.unauthorized, text)
                }
            },
            route("GET", "/v1/session"): { _, context in
                let (_, name) = try context.machine()
                return try json(RelayAPI.Session(machine: name, protocolVersion: WireFormat.protocolVersion, relayVersion: "0.1.0",
                                                 chunker: relay.store.config.chunker, compressionLevel: relay.configuration.pushCompressionLevel ?? relay.store.config.compressionLevel,
                                                 dedupScope: relay.configuration.dedupScope.rawValue))
            },
            route("POST", "/v1/chunks/missing"): { request, context in
                let (id, _) = try context.machine()
                let body = try await relay.limits.collect(request.body, upTo: WireFormat.maxIDsPerRequest * 32, what: "id list")
                let ids = try WireFormat.decodeIDs(Array(buffer: body), max: WireFormat.maxIDsPerRequest)
                return binary(try await relay.offload { WireFormat.encodeIDs(try relay.missing(machine: id, ids)) })
            },
            route("POST", "/v1/chunks"): { request, context in
                let (id, name) = try context.machine()
                // Wait for a slot (the machine's, then the relay's) before reading the body: queued uploads stay
                // in the kernel's buffers.
                return try await relay.limits.withUploadSlot(machine: id) {
                    let body = try await relay.limits.collect(request.body, upTo: WireFormat.maxUploadBytes + WireFormat.maxFetchBlobs * PackFormat.blobHeaderSize,
                                                              what: "upload")
                    return try await relay.offload { try json(try relay.upload(machine: id, name: name, body: Array(buffer: body))) }
                }
            },
            route("POST", "/v1/points"): { request, context in
                let (id, name) = try context.machine()
                let body = try await relay.limits.collect(request.body, upTo: 1 << 20, what: "recovery point")
                let point = try decode(RecoveryPoint.self, body)
                return try await relay.offload {
                    let info = try relay.commit(machine: id, name: name, point: point)
                    return try json(RelayAPI.PointEntry(id: info.id.hex, point: info.point), status: .created)
                }
            },
            route("GET", "/v1/points"): { _, context in
                let (_, name) = try context.machine()
                return try await relay.offload { try json(try relay.points(name: name).map { RelayAPI.PointEntry(id: $0.id.hex, point: $0.point) }) }
            },
            route("POST", "/v1/blobs"): { request, context in
                let (id, name) = try context.machine()
                let body = try await relay.limits.collect(request.body, upTo: WireFormat.maxFetchBlobs * 32, what: "blob list")
                let ids = try WireFormat.decodeIDs(Array(buffer: body), max: WireFormat.maxFetchBlobs)
                // At most a few answers per machine at once, each of bounded size (a prefix of the list).
                return try await relay.limits.withFetchSlot(machine: id) {
                    let n = try await relay.offload { try relay.fetchablePrefix(ids) }
                    return binary(try await relay.fetch(machine: id, name: name, Array(ids.prefix(n))))
                }
            },
        ]
    }

    public func buildRouter() -> Router<RelayRequestContext> {
        let router = Router(context: RelayRequestContext.self)
        router.add(middleware: ErrorMapping(logger: logger))
        let open = router.group()
        let authed = router.group().add(middleware: Authentication(catalog: relay.catalog))
        let table = handlers()
        for r in Self.routes {
            guard let handler = table[r] else { preconditionFailure("route \(r.method) \(r.path) has no handler") }
            let group = r.authenticated ? authed : open
            group.on(RouterPath(r.path), method: HTTPRequest.Method(r.method)!) { request, context in try await handler(request, context) }
        }
        return router
    }

    /// Runs until SIGTERM or SIGINT; in-flight requests finish first, then the open pack is sealed.
    public func run() async throws {
        let router = buildRouter()
        let server: HTTPServerBuilder
        // Idle connections (also ones that never send a request) close; bodies have their own deadline.
        let http1 = HTTPServerBuilder.http1(configuration: .init(idleTimeout: .seconds(Int64(relay.configuration.idleTimeoutSeconds))))
        if let identity {
            server = try .tls(http1, tlsConfiguration: try identity.serverConfiguration())
        } else {
            server = http1
        }
        let onListening = self.onListening
        let app = Application(
            router: router,
            server: server,
            // Beyond max_connections, new connections wait in the kernel's accept queue instead of taking
            // descriptors and memory.
            configuration: .init(address: .hostname(host, port: port), serverName: "outpost-relay",
                                 availableConnectionsDelegate: MaximumAvailableConnections(relay.configuration.maxConnections)),
            services: services,
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) },
            logger: logger
        )
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
        try relay.store.flush()
        logger.info("relay stopped; open pack sealed")
    }
}

/// Checks `Authorization: Bearer outpost1:<machine>:<secret>` against the catalog.
struct Authentication: RouterMiddleware {
    typealias Context = RelayRequestContext
    let catalog: MachineCatalog

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization], header.hasPrefix(RelayAPI.credentialScheme + " "),
              let cred = RelayAPI.parseCredential(String(header.dropFirst(RelayAPI.credentialScheme.count + 1))) else {
            throw RelayFailure(.unauthorized, "missing or malformed credential: enroll this machine with `outpost enroll` and use its config file")
        }
        guard let id = try catalog.authenticate(machine: cred.machine, credential: cred.secret) else {
            throw RelayFailure(.unauthorized, "the credential for machine \(cred.machine) is not valid (wrong, or the machine was removed); enroll again with a new token")
        }
        var ctx = context
        ctx.machineID = id
        ctx.machineName = cred.machine
        return try await next(request, ctx)
    }
}

/// Turns every failure into a JSON body `{"error": code, "message": …}` with a fitting status.
struct ErrorMapping: RouterMiddleware {
    typealias Context = RelayRequestContext
    let logger: Logger
    /// The codes the store throws; other layers' errors (the forwarder's on a tier-2 fetch) stay "internal".
    static let storeCodes: Set<OutpostError.Code> = [.notAStore, .alreadyExists, .unsupportedVersion, .locked, .diskFull, .io, .corrupt,
                                                     .notFound, .ambiguous, .invalid, .taken]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let f as RelayFailure {
            return errorResponse(f.kind.status, f.kind.rawValue, f.message)
        } catch let e as StoreError where Self.storeCodes.contains(e.code) {
            switch e.code {
            case .diskFull:
                logger.error("disk full", metadata: ["error": "\(e.message)"])
                return errorResponse(HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage"), "diskFull", "the relay's disk is full; nothing of this request was committed — the relay's operator must free space, then run the backup again (\(e.message))")
            case .alreadyExists, .taken: return errorResponse(.conflict, e.code.rawValue, e.message)
            case .notFound, .ambiguous: return errorResponse(.notFound, e.code.rawValue, e.message)
            case .invalid: return errorResponse(.badRequest, e.code.rawValue, e.message)
            default:
                logger.error("store failure", metadata: ["error": "\(e.message)"])
                return errorResponse(.internalServerError, e.code.rawValue, e.message)
            }
        } catch let e as FormatError {
            return errorResponse(.badRequest, "badRequest", e.message)
        } catch let e as HTTPError {
            return errorResponse(e.status, "http", e.body ?? e.status.reasonPhrase)
        } catch let e as DecodingError {
            return errorResponse(.badRequest, "badRequest", "the request body is not what this endpoint takes: \(e)")
        } catch where String(describing: type(of: error)).contains("TooManyBytes") {
            return errorResponse(.contentTooLarge, "tooLarge", "the request body is larger than this endpoint accepts (docs/protocol.md lists the limits)")
        } catch {
            logger.error("unexpected failure", metadata: ["error": "\(error)"])
            return errorResponse(.internalServerError, "internal", "\(error)")
        }
    }
}

extension RelayFailure.Kind {
    var status: HTTPResponse.Status {
        switch self {
        case .badRequest: .badRequest
        case .unauthorized: .unauthorized
        case .forbidden: .forbidden
        case .notFound: .notFound
        case .conflict: .conflict
        case .unprocessable: .unprocessableContent
        case .tooLarge: .contentTooLarge
        case .timeout: .requestTimeout
        case .diskFull: HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage")
        case .internalError: .internalServerError
        }
    }
}

func errorResponse(_ status: HTTPResponse.Status, _ code: String, _ message: String) -> Response {
    let body = (try? RelayAPI.encoder().encode(RelayAPI.ErrorBody(error: code, message: message))) ?? Data()
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
}

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try RelayAPI.encoder().encode(value)
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

func binary(_ bytes: [UInt8]) -> Response {
    Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
}

func decode<T: Decodable>(_ type: T.Type, _ buffer: ByteBuffer) throws -> T {
    do { return try RelayAPI.decoder().decode(type, from: Data(buffer.readableBytesView)) }
    catch { throw RelayFailure(.badRequest, "the request body is not a valid \(T.self): \(error)") }
}
