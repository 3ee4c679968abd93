import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import OutpostTLS
import ServiceLifecycle
import UnixSignals

/// How a server listens: one builder for the relay and the vault (TLS, connection cap, idle timeout, and the
/// per-connection deadlines of `ConnectionLimits`).
public struct HTTPServer: Sendable {
    /// Sent as the `Server` header.
    public var name: String
    public var host: String
    public var port: Int
    /// nil serves plain HTTP (the relay's `--insecure-http`).
    public var identity: TLSIdentity?
    /// Idle connections (also ones that never send a request) close after this long.
    public var idleTimeout: TimeAmount
    /// Beyond this many open connections, new ones wait in the kernel's accept queue instead of taking
    /// descriptors and memory.
    public var maxConnections: Int
    /// Header timeout, request deadline and minimum body rate of each connection, when the server wants them.
    public var connectionLimits: ConnectionLimits?

    public init(
        name: String, host: String, port: Int, identity: TLSIdentity?, idleTimeout: TimeAmount, maxConnections: Int,
        connectionLimits: ConnectionLimits? = nil
    ) {
        self.name = name; self.host = host; self.port = port; self.identity = identity
        self.idleTimeout = idleTimeout; self.maxConnections = maxConnections; self.connectionLimits = connectionLimits
    }

    /// Serves `router` until SIGTERM or SIGINT; in-flight requests finish first. `onListening` is told the
    /// bound port (port 0 picks a free one).
    public func run<Context: RequestContext>(
        _ router: Router<Context>, services: [any Service] = [], logger: Logger,
        onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) async throws
    where Context.Source == ApplicationRequestContextSource {
        var http1 = HTTP1Channel.Configuration(idleTimeout: idleTimeout)
        if let connectionLimits {
            http1.additionalChannelHandlers = { [ConnectionDeadlineHandler.hummingbird(connectionLimits, logger: logger)] }
        }
        let server: HTTPServerBuilder =
            if let identity {
                try .tls(.http1(configuration: http1), tlsConfiguration: try identity.serverConfiguration())
            } else {
                .http1(configuration: http1)
            }
        let app = Application(
            router: router, server: server,
            configuration: .init(
                address: .hostname(host, port: port), serverName: name,
                availableConnectionsDelegate: .maximum(maxConnections, logger: logger)),
            services: services,
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? 0) }, logger: logger)
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
    }
}
