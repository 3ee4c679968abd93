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
    public var session: ConsoleAccounts.Session?
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
    let library: MustacheLibrary
    let logger: Logger
    let limiter = LoginLimiter()
    let relayName: String

    public init(relay: Relay, hooks: ConsoleHooks, relayName: String, logger: Logger) throws {
        self.relay = relay
        self.hooks = hooks
        self.relayName = relayName
        self.logger = logger
        accounts = ConsoleAccounts(store: relay.store, clock: relay.clock)
        library = try ConsoleTemplates.library()
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
        router.get("/login", use: routes.loginPage)
        router.post("/login", use: routes.login)
        router.get("/login/:token", use: routes.loginLink)
        let admin = router.group().add(middleware: SessionMiddleware(accounts: accounts))
        admin.post("/logout", use: routes.logout)
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
        var values = data
        values["csrf"] = context.session?.csrf ?? ""
        let body = library.render(values, withTemplate: template) ?? ""
        let html =
            library.render(
                ["title": title, "body": body, "relay": relayName, "admin": context.session?.admin as Any, "csrf": context.session?.csrf ?? ""],
                withTemplate: "layout") ?? ""
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }
}

/// Headers on every answer: nothing cached, no framing, no script, no referrer.
struct ConsoleHeaders: RouterMiddleware {
    func handle(_ request: Request, context: ConsoleContext, next: (Request, ConsoleContext) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.cacheControl] = "no-store"
        response.headers[HTTPField.Name("Content-Security-Policy")!] =
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        response.headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        response.headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        response.headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        return response
    }
}

/// Lets a request through only with a live session cookie; a page asked without one goes to the login form, an
/// action is refused. A state-changing request must carry the session's CSRF token in its form.
struct SessionMiddleware: RouterMiddleware {
    let accounts: ConsoleAccounts
    static let cookie = "outpost_session"

    func handle(_ request: Request, context: ConsoleContext, next: (Request, ConsoleContext) async throws -> Response) async throws -> Response {
        var context = context
        if let token = request.cookies[Self.cookie]?.value, token.count == 64 {
            context.session = try accounts.session(token: token)
        }
        guard context.session != nil else {
            if request.method == .get { return Response(status: .seeOther, headers: [.location: "/login"]) }
            throw HTTPError(.unauthorized, message: "log in first: this action needs an administrator's session")
        }
        return try await next(request, context)
    }
}

/// Failed logins per peer address and per name: at most 5 in 5 minutes, then 429 until the oldest ages out.
final class LoginLimiter: Sendable {
    private let failures = Mutex<[String: [Date]]>([:])
    static let window: TimeInterval = 300
    static let allowed = 5

    /// Seconds to wait before another attempt, or nil when one is allowed.
    func wait(_ keys: [String], now: Date = Date()) -> Int? {
        failures.withLock { f in
            var longest: TimeInterval?
            for k in keys {
                let recent = (f[k] ?? []).filter { now.timeIntervalSince($0) < Self.window }
                f[k] = recent
                if recent.count >= Self.allowed, let oldest = recent.first {
                    longest = max(longest ?? 0, Self.window - now.timeIntervalSince(oldest))
                }
            }
            return longest.map { Int($0.rounded(.up)) }
        }
    }

    func failed(_ keys: [String], now: Date = Date()) {
        failures.withLock { f in for k in keys { f[k, default: []].append(now) } }
    }
}
