import Crypto
import CryptoExtras
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Mustache
import NIOCore
import OutpostCore
import Synchronization

/// What both consoles share, whatever keeps their administrators: the relay's in its SQLite index
/// (`ConsoleAccounts`), the vault's in its object store (`VaultAdmins`). Passwords, tokens, the session cookie,
/// CSRF, the login limit, the headers and the page layout are written once, here.

/// An administrator's open session: the cookie's token and the CSRF token its forms carry.
public struct ConsoleSession: Sendable, Equatable {
    public var admin: String
    public var token: String
    public var csrf: String
    public init(admin: String, token: String, csrf: String) { self.admin = admin; self.token = token; self.csrf = csrf }
}

/// Where a console's administrators and sessions are kept.
protocol ConsoleAccountStore: Sendable {
    /// A session when the password is right; nil otherwise (an unknown name costs the same scrypt).
    func login(_ name: String, password: String) throws -> ConsoleSession?
    /// The session a cookie names while it is live; its last use is refreshed.
    func session(token: String) throws -> ConsoleSession?
    func logout(token: String) throws
    /// Trades a one-time link's token for a session, once, before it expires.
    func redeem(link token: String) throws -> ConsoleSession?
}

/// Administrators' passwords: at least 12 characters, kept as scrypt hashes (N 2^15, r 8, p 1, a 16-byte salt).
enum ConsolePassword {
    static let scryptN = 1 << 15
    static let minimumLength = 12

    /// Why the name or the password cannot be an administrator's, or nil.
    static func problem(name: String, password: String?) -> String? {
        if let problem = MachineName.problem(name) { return problem.replacingOccurrences(of: "machine name", with: "administrator name") }
        if let password, password.count < minimumLength {
            return "the password of \(name) is \(password.count) characters long; give at least \(minimumLength)"
        }
        return nil
    }

    static func hash(_ password: String) throws -> String {
        var salt = [UInt8](repeating: 0, count: 16)
        var g = SystemRandomNumberGenerator()
        for i in salt.indices { salt[i] = UInt8.random(in: 0...255, using: &g) }
        let key = try derive(password, salt: salt, n: scryptN)
        return "scrypt$\(scryptN)$8$1$" + Data(salt).base64EncodedString() + "$" + key.base64EncodedString()
    }

    static func derive(_ password: String, salt: [UInt8], n: Int) throws -> Data {
        let key = try KDF.Scrypt.deriveKey(
            from: Array(password.utf8), salt: salt, outputByteCount: 32, rounds: n, blockSize: 8, parallelism: 1, maxMemory: 64 << 20)
        return key.withUnsafeBytes { Data($0) }
    }

    static func verify(_ password: String, against stored: String) -> Bool {
        let parts = stored.split(separator: "$").map(String.init)
        guard parts.count == 6, parts[0] == "scrypt", let n = Int(parts[1]), n >= 1 << 10, n <= 1 << 20,
            let salt = Data(base64Encoded: parts[4]), let expected = Data(base64Encoded: parts[5]),
            let derived = try? derive(password, salt: Array(salt), n: n)
        else { return false }
        return ConsoleToken.equal(Array(derived), Array(expected))
    }

    /// A hash no password matches, verified for unknown names so that they take as long as known ones.
    static let decoy = "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
}

/// Session, CSRF and login-link tokens: 32 random bytes in hex; stores keep only their SHA-256.
enum ConsoleToken {
    static func make() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }

    static func digest(_ token: String) -> Data { Data(SHA256.hash(data: Data(token.utf8))) }

    /// Constant time: every byte compared.
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// A page's values, made on a blocking thread and handed back to the request (read-only once made).
struct PageData: @unchecked Sendable {
    let values: [String: Any]
    init(_ values: [String: Any]) { self.values = values }
}

/// The layout around every page: the site's name, its links once logged in, the log-out form.
struct ConsolePages: Sendable {
    let library: MustacheLibrary
    /// "Outpost <site>" in the header.
    let site: String
    /// (href, label) of the header's links.
    let nav: [(String, String)]

    func page(_ title: String, _ template: String, _ data: [String: Any], context: ConsoleContext, status: HTTPResponse.Status = .ok) -> Response {
        let html = render(title, template, data, session: context.session)
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    /// The page's HTML. The header's links and log-out form come with a session only: `admin` is left out
    /// without one, since a nil in `Any` is a value to mustache (it showed "Log out nil" on the login page).
    func render(_ title: String, _ template: String, _ data: [String: Any], session: ConsoleSession?) -> String {
        var values = data
        values["csrf"] = session?.csrf ?? ""
        var layout: [String: Any] = [
            "title": title, "body": library.render(values, withTemplate: template) ?? "", "site": site, "csrf": session?.csrf ?? "",
            "nav": nav.map { ["href": $0.0, "label": $0.1] },
        ]
        if let session { layout["admin"] = session.admin }
        return library.render(layout, withTemplate: "layout") ?? ""
    }
}

/// Logging in (password or one-time link) and out, the same on both consoles.
struct ConsoleLogin: Sendable {
    let accounts: any ConsoleAccountStore
    let limiter: LoginLimiter
    let pages: ConsolePages
    let logger: Logger
    /// The command that makes a login link, for the refusal of a bad one.
    let linkCommand: String
    /// Runs blocking work (scrypt, the store) off Swift's cooperative pool.
    let offload: @Sendable (@escaping @Sendable () throws -> ConsoleSession?) async throws -> ConsoleSession?

    func add(to router: Router<ConsoleContext>, sessions admin: RouterGroup<ConsoleContext>) {
        router.get("/login", use: loginPage)
        router.post("/login", use: login)
        router.get("/login/:token", use: loginLink)
        admin.post("/logout", use: logout)
    }

    /// Password checks at once, per process (each holds 32 MiB for about 0.1 s).
    static let scryptGate = ConcurrencyGate(limit: 4)

    @Sendable func loginPage(_ request: Request, context: ConsoleContext) async throws -> Response {
        pages.page("Log in", "login", [:], context: context)
    }

    @Sendable func login(_ request: Request, context: ConsoleContext) async throws -> Response {
        let form = try await Self.form(request)
        let name = form["name"] ?? "", password = form["password"] ?? ""
        let keys = ["ip:" + context.peer, "name:" + name]
        if let wait = limiter.wait(keys) {
            return pages.page(
                "Log in", "login", ["error": "too many failed attempts; try again in \(wait) s"], context: context, status: .tooManyRequests)
        }
        // Each check is a 32 MiB scrypt on a thread of its own: a burst of logins must not take the server's memory.
        guard Self.scryptGate.enter() else {
            return pages.page(
                "Log in", "login", ["error": "the console is busy checking other logins; try again in a few seconds"], context: context,
                status: .serviceUnavailable)
        }
        defer { Self.scryptGate.leave() }
        let accounts = self.accounts
        guard let session = try await offload({ try accounts.login(name, password: password) }) else {
            limiter.failed(keys)
            logger.warning("console login refused", metadata: ["name": "\(name)", "peer": "\(context.peer)"])
            return pages.page("Log in", "login", ["error": "wrong name or password"], context: context, status: .unauthorized)
        }
        logger.notice("console login", metadata: ["admin": "\(name)", "peer": "\(context.peer)"])
        return Self.start(session)
    }

    @Sendable func loginLink(_ request: Request, context: ConsoleContext) async throws -> Response {
        let token = context.parameters.get("token") ?? ""
        let accounts = self.accounts
        guard token.count == 64, let session = try await offload({ try accounts.redeem(link: token) }) else {
            return pages.page(
                "Log in", "login",
                ["error": "this login link is not valid (used, expired or mistyped); ask for a new one with `\(linkCommand)`"],
                context: context, status: .unauthorized)
        }
        logger.notice("console login by link", metadata: ["admin": "\(session.admin)", "peer": "\(context.peer)"])
        return Self.start(session)
    }

    static func start(_ session: ConsoleSession) -> Response {
        var r = Response(status: .seeOther, headers: [.location: "/"])
        r.setCookie(Cookie(name: SessionMiddleware.cookie, value: session.token, path: "/", secure: true, httpOnly: true, sameSite: .strict))
        return r
    }

    @Sendable func logout(_ request: Request, context: ConsoleContext) async throws -> Response {
        try await Self.checkCSRF(request, context)
        if let s = context.session { try accounts.logout(token: s.token) }
        var r = Response(status: .seeOther, headers: [.location: "/login"])
        r.setCookie(Cookie(name: SessionMiddleware.cookie, value: "", maxAge: 0, path: "/", secure: true, httpOnly: true, sameSite: .strict))
        return r
    }

    /// A form's fields (application/x-www-form-urlencoded, at most 64 KiB).
    static func form(_ request: Request) async throws -> [String: String] {
        let body = try await request.body.collect(upTo: 64 << 10)
        var out: [String: String] = [:]
        for pair in String(buffer: body).split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
            }
            if kv.count == 2 { out[kv[0]] = kv[1] } else if kv.count == 1 { out[kv[0]] = "" }
        }
        return out
    }

    /// A state-changing request carries the session's CSRF token; refused otherwise.
    static func checkCSRF(_ request: Request, _ context: ConsoleContext) async throws {
        let sent = try await form(request)["csrf"] ?? ""
        guard let expected = context.session?.csrf, ConsoleToken.equal(Array(sent.utf8), Array(expected.utf8)) else {
            throw HTTPError(.forbidden, message: "this form's CSRF token is missing or wrong: reload the page and try again")
        }
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
    let accounts: any ConsoleAccountStore
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

/// At most `limit` holders at once; the others are turned away at once rather than queued.
final class ConcurrencyGate: Sendable {
    let limit: Int
    private let held = Mutex(0)
    init(limit: Int) { self.limit = limit }
    func enter() -> Bool {
        held.withLock { n in
            guard n < limit else { return false }
            n += 1
            return true
        }
    }
    func leave() { held.withLock { $0 -= 1 } }
}

/// Blocking work on a thread of its own (the vault console has no blocking pool; its pages are rare).
enum ConsoleThread {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { done in Thread { done.resume(with: Result { try body() }) }.start() }
    }
}
