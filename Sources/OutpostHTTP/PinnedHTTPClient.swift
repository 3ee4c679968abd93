import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import OutpostCore

/// HTTPS to one server whose certificate is pinned: the credential on every request, bounded answers, and
/// retries with exponential backoff (`Retry`) for transient failures — connection errors, a cut-off answer,
/// 502/503/504. The relay client and the vault client are this client plus their endpoints and their words.
public final class PinnedHTTPClient: Sendable {
    /// One request. The answer's status and body come back for every status but 502/503/504.
    public struct Call: Sendable {
        public var method: HTTPMethod
        public var path: String
        public var body: [UInt8]?
        /// The body already in a buffer (an upload encoded in place): sent without another copy.
        public var bodyBuffer: ByteBuffer?
        public var contentType = "application/octet-stream"
        /// Whether the credential goes with it (enrollment and registration go without).
        public var authenticated = true
        /// One `Range: bytes=FIRST-LAST`.
        public var range: Range<Int>?
        /// Further request headers (name, value).
        public var headers: [(String, String)] = []
        /// Paces the body slice by slice as it goes out, so that a limit holds within a large body too.
        public var throttle: Throttle?
        /// How long the whole exchange may take.
        public var timeout: TimeAmount
        public var maxResponse: Int

        public init(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, timeout: TimeAmount, maxResponse: Int) {
            self.method = method
            self.path = path
            self.body = body
            self.timeout = timeout
            self.maxResponse = maxResponse
        }
    }

    /// What the server's client says when it gives up; each names the server its own way.
    public struct Wording: Sendable {
        /// The TLS handshake failed against the pinned certificate: never retried.
        public var pinFailure: @Sendable (_ base: String, _ error: any Error) -> any Error
        /// Every attempt failed with a transient failure.
        public var unreachable: @Sendable (_ base: String, _ attempts: Int, _ reason: String) -> any Error
        /// The proxy refused its credentials (407); nil where no proxy is used (any 407 is then a connection error).
        public var proxyRefused: (@Sendable () -> any Error)?
        /// Told of each retry before its wait (attempt, reason, delay in seconds).
        public var retrying: (@Sendable (_ attempt: Int, _ reason: String, _ delay: Double) -> Void)?

        public init(
            pinFailure: @escaping @Sendable (String, any Error) -> any Error, unreachable: @escaping @Sendable (String, Int, String) -> any Error,
            proxyRefused: (@Sendable () -> any Error)? = nil, retrying: (@Sendable (Int, String, Double) -> Void)? = nil
        ) {
            self.pinFailure = pinFailure
            self.unreachable = unreachable
            self.proxyRefused = proxyRefused
            self.retrying = retrying
        }
    }

    public let base: String
    let credential: String?
    let http: HTTPClient
    let logger: Logger
    let maxAttempts: Int
    let wording: Wording

    /// `tls` nil talks plain HTTP (a relay run with `--insecure-http`); `readTimeout` bounds each read.
    public init(
        baseURL: String, credential: String?, tls: TLSConfiguration?, proxy: ProxyConfiguration? = nil,
        connectTimeout: TimeAmount = .seconds(5), readTimeout: TimeAmount, connectionsPerHost: Int = 8,
        maxAttempts: Int, logger: Logger, wording: Wording
    ) {
        base = DirectoryPath.normalized(baseURL)
        self.credential = credential
        self.logger = logger
        self.maxAttempts = max(1, maxAttempts)
        self.wording = wording
        var config = HTTPClient.Configuration(
            tlsConfiguration: tls,
            timeout: .init(connect: connectTimeout, read: readTimeout),
            connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connectionsPerHost)
        )
        config.decompression = .disabled
        // Retries are ours (Retry, announced through `wording.retrying`): the pool's own would retry a refused
        // connection silently until the connect timeout, five times over.
        config.connectionPool.retryConnectionEstablishment = false
        if let proxy {
            config.proxy = .server(
                host: proxy.host, port: proxy.port,
                authorization: proxy.user.map { .basic(username: $0, password: proxy.password ?? "") })
        }
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    public func close() async {
        try? await http.shutdown()
    }

    /// Sends `call`, again while it fails transiently; the status and body of the answer.
    public func send(_ call: Call) async throws -> (status: Int, body: [UInt8]) {
        let (status, buffer) = try await sendForBuffer(call)
        return (status, Array(buffer: buffer))
    }

    /// The same, with the answer's body as received (a large binary answer is read in place, not copied).
    public func sendForBuffer(_ call: Call) async throws -> (status: Int, body: ByteBuffer) {
        let (status, _, body) = try await sendForAnswer(call)
        return (status, body)
    }

    /// The same, with the answer's headers too.
    public func sendForAnswer(_ call: Call) async throws -> (status: Int, headers: HTTPHeaders, body: ByteBuffer) {
        let base = self.base, wording = self.wording
        return try await Retry.run(
            attempts: maxAttempts,
            onRetry: { attempt, reason, delay in
                wording.retrying?(attempt, reason, delay)
            },
            exhausted: { attempts, reason in
                wording.unreachable(base, attempts, reason)
            }
        ) {
            try await once(call)
        }
    }

    private func once(_ call: Call) async throws -> (status: Int, headers: HTTPHeaders, body: ByteBuffer) {
        var request = HTTPClientRequest(url: base + call.path)
        request.method = call.method
        if call.authenticated, let credential { request.headers.add(name: "Authorization", value: "Bearer " + credential) }
        if let range = call.range { request.headers.add(name: "Range", value: "bytes=\(range.lowerBound)-\(range.upperBound - 1)") }
        for (name, value) in call.headers { request.headers.add(name: name, value: value) }
        if let body = call.body {
            request.headers.add(name: "Content-Type", value: call.contentType)
            if let throttle = call.throttle {
                request.body = .stream(ThrottledBody(bytes: body, throttle: throttle), length: .known(Int64(body.count)))
            } else {
                request.body = .bytes(ByteBuffer(bytes: body))
            }
        } else if let buffer = call.bodyBuffer {
            request.headers.add(name: "Content-Type", value: call.contentType)
            request.body = .bytes(buffer)
        }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: call.timeout, logger: logger)
        } catch let e as NIOSSLError {
            throw wording.pinFailure(base, e)
        } catch let e as BoringSSLError {
            // A handshake against the pinned certificate can fail with either type (which one depends on where
            // BoringSSL stops): both mean the server's certificate is not the pinned one, never a retry.
            throw wording.pinFailure(base, e)
        } catch {
            if let refused = wording.proxyRefused, let e = error as? HTTPClientError, e == .proxyAuthenticationRequired { throw refused() }
            throw TransientFailure("\(error)")
        }
        let bytes: ByteBuffer
        do { bytes = try await response.body.collect(upTo: call.maxResponse) } catch {
            throw TransientFailure("the answer was cut off: \(error)")
        }
        let status = Int(response.status.code)
        if [502, 503, 504].contains(status) { throw TransientFailure("HTTP \(status)") }
        return (status, response.headers, bytes)
    }

    /// The `message` of an error body, or the body's first `limit` bytes as text.
    public static func message(of body: [UInt8], limit: Int) -> String {
        (try? JSONDecoder().decode(HTTPErrorBody.self, from: Data(body)))?.message ?? String(decoding: body.prefix(limit), as: UTF8.self)
    }
}
