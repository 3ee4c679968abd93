import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import OutpostCore
import ServiceLifecycle

/// `GET /metrics` in Prometheus text format on a listener of its own (docs/metrics.md), never on the port machines
/// or relays use: plain HTTP, meant for loopback or a monitoring network, and behind a bearer token when one is
/// set. Runs as a service of the server's process, stopping with it.
public struct MetricsServer: Service {
    public let host: String
    public let port: Int
    let token: String?
    let registry: MetricsRegistry
    /// The values computed at each scrape (`MetricsSnapshot.exposition()`), after the live registry's.
    let snapshot: @Sendable () async -> [UInt8]
    /// Where the address came from, for the error when it cannot be listened on.
    let setting: String
    let logger: Logger
    let onListening: @Sendable (Int) -> Void

    public init(
        listen: (host: String, port: Int), token: String?, registry: MetricsRegistry = .process, setting: String, logger: Logger,
        snapshot: @escaping @Sendable () async -> [UInt8] = { [] }, onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        (host, port) = listen
        self.token = token
        self.registry = registry
        self.setting = setting
        self.logger = logger
        self.snapshot = snapshot
        self.onListening = onListening
    }

    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// `/metrics` and nothing else; 401 without the token when one is set.
    public func buildRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        let token = self.token, registry = self.registry, snapshot = self.snapshot
        router.get("/metrics") { request, _ -> Response in
            if let token, !Self.authorized(request.headers[.authorization], token: token) {
                var headers = HTTPFields()
                headers[.wwwAuthenticate] = "Bearer realm=\"outpost metrics\""
                headers[.contentType] = "text/plain; charset=utf-8"
                return Response(
                    status: .unauthorized, headers: headers,
                    body: .init(byteBuffer: ByteBuffer(string: "this endpoint needs Authorization: Bearer <the metrics token file's content>\n")))
            }
            var bytes = registry.exposition()
            bytes += await snapshot()
            var headers = HTTPFields()
            headers[.contentType] = Self.contentType
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        return router
    }

    /// The header carries the token; compared in time independent of where they differ.
    static func authorized(_ header: String?, token: String) -> Bool {
        guard let header, header.hasPrefix("Bearer ") else { return false }
        let given = Array(header.utf8.dropFirst(7)), expected = Array(token.utf8)
        guard given.count == expected.count else { return false }
        return zip(given, expected).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    public func run() async throws {
        let onListening = self.onListening
        let app = Application(
            router: buildRouter(), server: .http1(configuration: .init(idleTimeout: .seconds(60))),
            configuration: .init(
                address: .hostname(host, port: port), serverName: "outpost-metrics",
                availableConnectionsDelegate: .maximum(16, logger: logger)),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) }, logger: logger)
        do { try await app.run() } catch {
            throw Self.listenFailure(error, host: host, port: port, setting: setting)
        }
    }

    /// Why the listener could not start, worded for the operator.
    static func listenFailure(_ error: any Error, host: String, port: Int, setting: String) -> any Error {
        let text = "\(error)"
        let reason: String
        if text.contains("Address already in use") || text.contains("errno: 98") {
            reason = "the address is already in use (another program listens there)"
        } else if text.contains("Permission denied") || text.contains("errno: 13") {
            reason = "permission denied (ports below 1024 need privileges)"
        } else if text.contains("Cannot assign requested address") || text.contains("errno: 99") {
            reason = "this machine has no such address"
        } else {
            return error
        }
        return OutpostError(.cannotListen, "cannot serve metrics on \(host):\(port): \(reason); choose another address with \(setting)")
    }

    // MARK: Settings

    /// Checks a metrics address: HOST:PORT, and on anything but loopback only with a token, since the metrics
    /// travel in plain HTTP and name the machines. `what` names the setting in errors.
    public static func checkListen(_ listen: String, hasToken: Bool, what: String) throws -> (host: String, port: Int) {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw OutpostError(.config, "\(what) \(listen.debugDescription) must be HOST:PORT, e.g. 127.0.0.1:9440")
        }
        var host = String(listen[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw OutpostError(.config, "\(what) \(listen.debugDescription) has no host: write 127.0.0.1:\(port)") }
        if !hasToken && !isLoopback(host) {
            throw OutpostError(
                .config,
                "\(what) \(listen.debugDescription) is not a loopback address: the metrics are plain HTTP and name the machines, so set a metrics token file as well, or listen on 127.0.0.1"
            )
        }
        return (host, port)
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// The token scrapers send: the file's content without surrounding white space, at least 16 characters.
    public static func readToken(file: String, what: String) throws -> String {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw OutpostError(
                .config, "\(what) \(file) cannot be read; create it (e.g. `openssl rand -hex 32 > \(file)`, mode 0600) or fix its path")
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard token.count >= 16, !token.contains(where: \.isWhitespace) else {
            throw OutpostError(
                .config, "\(what) \(file) must hold one token of at least 16 characters without spaces (e.g. `openssl rand -hex 32 > \(file)`)")
        }
        return token
    }
}
