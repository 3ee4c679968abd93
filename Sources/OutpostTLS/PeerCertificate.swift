import Crypto
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import OutpostCore

/// The certificate a TLS server presents, read from the handshake itself.
///
/// Enrollment pins what the peer *proves it holds the key for* — the leaf certificate of the handshake — and not
/// a PEM document the server sends as data: a man in the middle could append its own certificate to the real
/// relay's PEM, and a pin computed over one certificate while trust went to all of them would let it through.
public enum PeerCertificate {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// DER of the leaf certificate `host:port` presents. Nothing is verified here: the caller compares the
    /// fingerprint with what the operator gave, or shows it for trust on first use.
    public static func leafDER(host: String, port: Int, timeout: TimeAmount = .seconds(10)) async throws -> [UInt8] {
        var config = TLSConfiguration.makeClientConfiguration()
        config.certificateVerification = .none
        config.minimumTLSVersion = .tlsv12
        let context = try NIOSSLContext(configuration: config)
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let handshake = loop.makePromise(of: Void.self)
        // SNI takes names only; an address is sent without it.
        let sni = isAddress(host) ? nil : host
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let tls = try NIOSSLClientHandler(context: context, serverHostname: sni)
                        try channel.pipeline.syncOperations.addHandlers(tls, HandshakeWatcher(promise: handshake))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            handshake.fail(error)
            throw Failure(description: "cannot connect to \(host):\(port): \(error)")
        }
        let timer = loop.scheduleTask(in: timeout) {
            handshake.fail(Failure(description: "no TLS handshake with \(host):\(port) within \(timeout.nanoseconds / 1_000_000_000) s"))
        }
        defer { timer.cancel(); channel.close(promise: nil) }
        do { try await handshake.futureResult.get() } catch let f as Failure { throw f } catch {
            throw Failure(description: "the TLS handshake with \(host):\(port) failed: \(error)")
        }
        guard let leaf = try await channel.nioSSL_peerCertificate().get() else {
            throw Failure(description: "\(host):\(port) presented no certificate")
        }
        return try leaf.toDERBytes()
    }

    /// Host and port of an https:// URL (443 when no port is given).
    public static func endpoint(of url: String) -> (host: String, port: Int)? {
        guard let c = URLComponents(string: url), c.scheme == "https", var host = c.host, !host.isEmpty else { return nil }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, c.port ?? 443)
    }
}

private func isAddress(_ host: String) -> Bool {
    var v4 = in_addr(), v6 = in6_addr()
    return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
}

/// Completes the promise when the handshake completes, fails it on an error or a closed connection.
private final class HandshakeWatcher: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<Void>
    init(promise: EventLoopPromise<Void>) { self.promise = promise }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent { promise.succeed(()) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(PeerCertificate.Failure(description: "the server closed the connection during the TLS handshake"))
        context.fireChannelInactive()
    }
}
