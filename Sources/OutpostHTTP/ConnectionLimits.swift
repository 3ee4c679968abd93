import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes

/// What a server grants one connection (issue 8: idle unauthenticated sockets exhausted the vault's descriptors;
/// bodies sent at 1 byte per 4 s held upload slots for hours). Shared by the relay and the vault servers.
///
/// - `maxConnections`: open connections at most; further ones wait in the listen backlog until one closes. With
///   Hummingbird: `ApplicationConfiguration(availableConnectionsDelegate: .maximum(limits.maxConnections, logger:))`.
/// - `headerTimeout`: from the connection's start (TLS handshake included), and from the end of each response, to
///   a complete request head. An idle or trickling connection that has not asked anything is closed, so that the
///   connection cap cannot be held by sockets that do nothing.
/// - `requestDeadline`: from a request head to the end of its response (body upload, work, answer).
/// - `minimumBodyRate`: body bytes per second at least, measured over `rateWindow` of the time in which the server
///   waited for the client. Time in which the server did not ask for data (it was busy, or holding the request
///   until memory is free) does not count against the client.
///
/// The per-connection part is `ConnectionDeadlineHandler`, placed after the HTTP decoder.
public struct ConnectionLimits: Sendable, Equatable {
    public var maxConnections: Int
    public var headerTimeout: TimeAmount
    public var requestDeadline: TimeAmount
    public var minimumBodyRate: Int
    public var rateWindow: TimeAmount
    /// How often a connection's deadlines are looked at.
    public var tick: TimeAmount

    public init(
        maxConnections: Int, headerTimeout: TimeAmount, requestDeadline: TimeAmount, minimumBodyRate: Int,
        rateWindow: TimeAmount = .seconds(30), tick: TimeAmount = .seconds(1)
    ) {
        self.maxConnections = maxConnections
        self.headerTimeout = headerTimeout
        self.requestDeadline = requestDeadline
        self.minimumBodyRate = minimumBodyRate
        self.rateWindow = rateWindow
        self.tick = tick
    }
}

/// What a request part is, for `ConnectionDeadlines` (the HTTP part types live in the server's modules).
public enum RequestPartKind: Sendable, Equatable {
    case head
    case body(bytes: Int)
    case end
}

/// The deadlines of one connection as a state machine over explicit times, so that it is tested without a clock.
public struct ConnectionDeadlines: Sendable {
    public enum Verdict: Sendable, Equatable {
        case keepOpen
        /// Close the connection; the reason is for the log.
        case close(String)
    }

    let limits: ConnectionLimits
    /// Requests whose response has not ended (HTTP/1.1 may pipeline).
    private var outstanding = 0
    private var readingRequest = false
    private var responseEndedEarly = false
    private var idleSince: NIODeadline
    private var headAt: NIODeadline
    /// Rate accounting: time the server waited for data, and body bytes, since the window began.
    private var waited: TimeAmount = .zero
    private var bytes = 0
    private var demandSince: NIODeadline?

    public init(limits: ConnectionLimits, now: NIODeadline) {
        self.limits = limits
        idleSince = now
        headAt = now
    }

    public mutating func received(_ part: RequestPartKind, now: NIODeadline) {
        switch part {
        case .head:
            outstanding += 1
            readingRequest = true
            responseEndedEarly = false
            headAt = now
            waited = .zero
            bytes = 0
            demandSince = nil
        case .body(let n):
            if let since = demandSince { waited = waited + (now - since) }
            demandSince = nil
            bytes += n
        case .end:
            readingRequest = false
            demandSince = nil
            if responseEndedEarly {
                // The answer went out before the body was read (a refusal): the connection is idle from here.
                responseEndedEarly = false
                idleSince = now
            }
        }
    }

    /// The server asked for more data (a `read` went towards the socket).
    public mutating func readRequested(now: NIODeadline) {
        if readingRequest && demandSince == nil { demandSince = now }
    }

    public mutating func responseEnded(now: NIODeadline) {
        outstanding = max(0, outstanding - 1)
        if readingRequest { responseEndedEarly = true } else if outstanding == 0 { idleSince = now }
    }

    public mutating func check(now: NIODeadline) -> Verdict {
        if readingRequest {
            if now - headAt > limits.requestDeadline {
                return .close("the request was not received within \(limits.requestDeadline.nanoseconds / 1_000_000_000) s")
            }
            var waitedNow = waited
            if let since = demandSince { waitedNow = waitedNow + (now - since) }
            if waitedNow >= limits.rateWindow {
                let seconds = Double(waitedNow.nanoseconds) / 1e9
                if Double(bytes) < Double(limits.minimumBodyRate) * seconds {
                    return .close("the request body came at \(Int(Double(bytes) / seconds)) bytes/s, below the minimum of \(limits.minimumBodyRate)")
                }
                waited = .zero
                bytes = 0
                if demandSince != nil { demandSince = now }
            }
            return .keepOpen
        }
        if outstanding > 0 {
            if now - headAt > limits.requestDeadline {
                return .close("the response was not delivered within \(limits.requestDeadline.nanoseconds / 1_000_000_000) s of the request")
            }
            return .keepOpen
        }
        if now - idleSince > limits.headerTimeout {
            return .close("no complete request within \(limits.headerTimeout.nanoseconds / 1_000_000) ms")
        }
        return .keepOpen
    }
}

/// Enforces `ConnectionLimits`' deadlines on one connection. Place it after the HTTP decoder (with Hummingbird:
/// `HTTP1Channel.Configuration(additionalChannelHandlers: [ConnectionDeadlineHandler<HTTPRequestPart,
/// HTTPResponsePart>(…)])`); `classify` and `isResponseEnd` tell it what the parts are.
public final class ConnectionDeadlineHandler<In, Out>: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = In
    public typealias InboundOut = In
    public typealias OutboundIn = Out
    public typealias OutboundOut = Out

    private var state: ConnectionDeadlines
    private let limits: ConnectionLimits
    private let classify: (In) -> RequestPartKind
    private let isResponseEnd: (Out) -> Bool
    private let onClose: (String) -> Void
    private var timer: Scheduled<Void>?

    /// `onClose` is told why a connection was closed (for the log).
    public init(
        limits: ConnectionLimits, classify: @escaping (In) -> RequestPartKind, isResponseEnd: @escaping (Out) -> Bool,
        onClose: @escaping (String) -> Void = { _ in }
    ) {
        self.limits = limits
        self.classify = classify
        self.isResponseEnd = isResponseEnd
        self.onClose = onClose
        state = ConnectionDeadlines(limits: limits, now: .now())
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        // The clock starts when the connection is set up: a TLS handshake that never ends counts as no request.
        state = ConnectionDeadlines(limits: limits, now: .now())
        if context.channel.isActive { arm(context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        arm(context)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) { disarm() }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        state.received(classify(unwrapInboundIn(data)), now: .now())
        context.fireChannelRead(data)
    }

    public func read(context: ChannelHandlerContext) {
        state.readRequested(now: .now())
        context.read()
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if isResponseEnd(unwrapOutboundIn(data)) { state.responseEnded(now: .now()) }
        context.write(data, promise: promise)
    }

    private func arm(_ context: ChannelHandlerContext) {
        guard timer == nil else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: limits.tick) { [self] in
            timer = nil
            switch state.check(now: .now()) {
            case .keepOpen:
                if context.channel.isActive { arm(context) }
            case .close(let reason):
                onClose(reason)
                context.close(promise: nil)
            }
        }
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }
}

@available(*, unavailable)
extension ConnectionDeadlineHandler: Sendable {}

extension ConnectionDeadlineHandler where In == HTTPRequestPart, Out == HTTPResponsePart {
    /// The handler over Hummingbird's request and response parts; closed connections are logged with their reason.
    public static func hummingbird(_ limits: ConnectionLimits, logger: Logger) -> ConnectionDeadlineHandler {
        ConnectionDeadlineHandler(
            limits: limits,
            classify: { part in
                switch part {
                case .head: .head
                case .body(let bytes): .body(bytes: bytes.readableBytes)
                case .end: .end
                }
            },
            isResponseEnd: { part in
                if case .end = part { return true }
                return false
            },
            onClose: { reason in
                logger.info("connection closed", metadata: ["reason": "\(reason)"])
            })
    }
}
