import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import Mustache
import NIOCore
import OutpostArchive
import OutpostCore
import OutpostHTTP
import OutpostRelay
import OutpostStore
import OutpostTLS
import ServiceLifecycle
import Synchronization

/// Per-request state of the console: the peer (for the login rate limit) and the session, once checked.
public struct ConsoleContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var session: ConsoleSession?
    public var peer: String

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peer = source.channel.remoteAddress?.ipAddress ?? "?"
    }
}

/// What the console needs of the relay beyond its store: the vault's blobs (a point only the vault holds is
/// browsed and downloaded from there), and the actions the forwarder serves.
public struct ConsoleHooks: Sendable {
    public var vault: (@Sendable (BlobID) async throws -> PreparedBlob?)?
    public var forwardNow: (@Sendable () -> Void)?
    /// A line on the vault (registered, backlog) for the overview.
    public var vaultStatus: @Sendable () -> String
    public init(
        vault: (@Sendable (BlobID) async throws -> PreparedBlob?)?, forwardNow: (@Sendable () -> Void)?, vaultStatus: @escaping @Sendable () -> String
    ) {
        self.vault = vault; self.forwardNow = forwardNow; self.vaultStatus = vaultStatus
    }
}

/// The relay's web console (issue 13): its own HTTPS listener (`console_listen`), with the relay's certificate.
public struct ConsoleServer: Sendable {
    let relay: Relay
    let hooks: ConsoleHooks
    let accounts: ConsoleAccounts
    let pages: ConsolePages
    let logger: Logger
    let limiter = LoginLimiter()
    let relayName: String

    public init(relay: Relay, hooks: ConsoleHooks, relayName: String, logger: Logger) throws {
        self.relay = relay
        self.hooks = hooks
        self.relayName = relayName
        self.logger = logger
        accounts = ConsoleAccounts(store: relay.store, clock: relay.clock)
        pages = ConsolePages(library: try ConsoleTemplates.library(), site: relayName, nav: [("/", "Overview"), ("/alerts", "Alerts")])
    }

    /// The console as a service of `relay serve`.
    public func service(host: String, port: Int, identity: TLSIdentity?, onListening: @escaping @Sendable (Int) -> Void) throws -> some Service {
        let server: HTTPServerBuilder =
            if let identity {
                try .tls(.http1(), tlsConfiguration: try identity.serverConfiguration())
            } else {
                .http1()
            }
        return Application(
            router: buildRouter(), server: server,
            configuration: .init(address: .hostname(host, port: port), serverName: "outpost-console"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) }, logger: logger)
    }

    public func buildRouter() -> Router<ConsoleContext> {
        let router = Router(context: ConsoleContext.self)
        router.add(middleware: ConsoleHeaders())
        let routes = ConsoleRoutes(server: self)
        let admin = router.group().add(middleware: SessionMiddleware(accounts: accounts))
        let relay = self.relay
        ConsoleLogin(
            accounts: accounts, limiter: limiter, pages: pages, logger: logger, linkCommand: "outpost relay admin link NAME",
            offload: { body in try await relay.offload(body) }
        ).add(to: router, sessions: admin)
        admin.get("/", use: routes.overview)
        admin.get("/alerts", use: routes.alerts)
        admin.get("/machines/:name", use: routes.machine)
        admin.post("/machines/:name/backup-now", use: routes.backupNow)
        admin.post("/forward-now", use: routes.forwardNow)
        admin.post("/check", use: routes.check)
        admin.get("/jobs/:id", use: routes.job)
        admin.get("/points/:id/browse", use: routes.browse)
        admin.get("/points/:id/file", use: routes.file)
        admin.get("/points/:id/tar", use: routes.tar)
        return router
    }

    func page(_ title: String, _ template: String, _ data: [String: Any], context: ConsoleContext, status: HTTPResponse.Status = .ok) -> Response {
        pages.page(title, template, data, context: context, status: status)
    }
}
