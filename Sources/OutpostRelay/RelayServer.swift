import Foundation
import Hummingbird
import Logging
import OutpostCore
import OutpostHTTP
import OutpostStore
import OutpostTLS
import ServiceLifecycle

/// The machine a request's credential belongs to.
public struct AuthenticatedMachine: Sendable {
    public let id: Int64
    public let name: String
}

/// Per-request state: the machine the credential belongs to, once authenticated.
public struct RelayRequestContext: BearerContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: AuthenticatedMachine?

    public init(source: Source) { coreContext = .init(source: source) }

    public var maxUploadSize: Int { WireFormat.maxUploadBytes + (1 << 20) }
    public static let credentialRequired = "this request needs a machine credential"
}

/// The relay's HTTPS server: routes of protocol v1 (docs/protocol.md), authentication, error mapping.
public struct RelayServer: Sendable {
    public let relay: Relay
    /// Where and how it listens; bodies have their own deadline (RequestLimits), so connections need none beyond
    /// the idle timeout.
    public let listener: HTTPServer
    let logger: Logger
    /// Called with the bound port once the server listens (port 0 picks a free one).
    let onListening: @Sendable (Int) -> Void
    let services: [any Service]

    public init(
        relay: Relay, identity: TLSIdentity?, host: String, port: Int, logger: Logger, services: [any Service] = [],
        onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        listener = HTTPServer(
            name: "outpost-relay", host: host, port: port, identity: identity,
            idleTimeout: .seconds(Int64(relay.configuration.idleTimeoutSeconds)),
            maxConnections: relay.configuration.maxConnections)
        self.relay = relay; self.logger = logger; self.services = services; self.onListening = onListening
    }

    /// Every route of the relay; a test checks them against docs/openapi/relay.yaml, so the document cannot drift
    /// from the server.
    public func buildRouter() -> Router<RelayRequestContext> {
        let router = Router(context: RelayRequestContext.self)
        // First: it sees the status the error middleware answers with (docs/metrics.md).
        router.add(middleware: RequestMetricsMiddleware())
        router.add(middleware: Self.errors(logger: logger))
        ServiceRoutes(certificatePEM: listener.identity?.certificatePEM, noCertificate: "this relay serves plain HTTP and has no certificate")
            .addRoutes(to: router)
        RelayRoutes(relay: relay).addRoutes(to: router)
        return router
    }

    /// Runs until SIGTERM or SIGINT; in-flight requests finish first, then the open pack is sealed.
    public func run() async throws {
        try await listener.run(buildRouter(), services: services, logger: logger, onListening: onListening)
        try relay.store.flush()
        logger.info("relay stopped; open pack sealed")
    }

    /// The codes the store throws; other layers' errors (the forwarder's on a tier-2 fetch) stay "internal".
    static let storeCodes: Set<OutpostError.Code> = [
        .notAStore, .alreadyExists, .unsupportedVersion, .locked, .diskFull, .io, .corrupt,
        .notFound, .ambiguous, .invalid, .taken,
    ]

    /// The relay's answers to failures (docs/protocol.md §7): the store's errors with their own status and code.
    static func errors(logger: Logger) -> ErrorMiddleware<RelayRequestContext> {
        let wording = ErrorMiddleware<RelayRequestContext>.Wording(
            tooLarge: "the request body is larger than this endpoint accepts (docs/protocol.md lists the limits)",
            malformedBody: "the request body is not what this endpoint takes")
        return ErrorMiddleware(logger: logger, wording: wording) { error in
            switch error {
            case let e as StoreError where storeCodes.contains(e.code):
                if e.code == .diskFull {
                    logger.error("disk full", metadata: ["error": "\(e.message)"])
                    return HTTPFailure(
                        e,
                        message:
                            "the relay's disk is full; nothing of this request was committed — the relay's operator must free space, then run the backup again (\(e.message))"
                    )
                }
                // The client's mistakes (4xx) are its to read; the relay's own failures are logged here too.
                if e.httpStatus >= 500 { logger.error("store failure", metadata: ["error": "\(e.message)"]) }
                return HTTPFailure(e)
            case let e as FormatError:
                return HTTPFailure(.badRequest, e.message)
            default:
                return nil
            }
        }
    }
}
