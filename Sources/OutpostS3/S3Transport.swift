import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import OutpostCore

/// One HTTP exchange of the S3 store, as sent and as answered.
struct S3WireRequest: Sendable {
    var method: String
    var url: String
    var headers: [(String, String)]
    var body: [UInt8]
}

struct S3WireResponse: Sendable {
    var status: Int
    var headers: [(String, String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.0.lowercased() == n }?.1
    }
}

/// How the S3 store reaches the service. Throws only when no answer came (connection refused, reset, timed out);
/// any HTTP status is an answer. Tests put a scripted transport in front of the real one to inject failures.
protocol S3Transport: Sendable {
    func send(_ request: S3WireRequest, timeout: TimeAmount) throws -> S3WireResponse
}

/// AsyncHTTPClient on an event loop group of its own, shared by every S3 store of the process and never shut down
/// (like `HTTPClient.shared`): a vault opens its stores once and keeps them for its lifetime.
///
/// The `ObjectStore` protocol is synchronous, so `send` blocks the calling thread on the request's future. That is
/// safe on any thread but this group's own: there the wait would stop the very loop that has to complete the
/// request, so `send` refuses to run on one. Callers (the vault's request handlers, which run on Swift's
/// concurrency pool, and the commands) are never on it; a blocked caller holds one thread of its own pool for the
/// request's duration, as a `FileObjectStore` read blocks it on the disk.
final class AsyncHTTPTransport: S3Transport {
    static let shared = AsyncHTTPTransport()

    let group: MultiThreadedEventLoopGroup
    let client: HTTPClient

    private init() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        var config = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: .init(connect: .seconds(10), read: .seconds(60)),
            connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 16)
        )
        config.decompression = .disabled
        // Retries are the store's (bounded, with backoff, named in its errors): the pool's own would retry a
        // refused connection silently until the connect timeout.
        config.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(eventLoopGroup: group, configuration: config)
    }

    func send(_ request: S3WireRequest, timeout: TimeAmount) throws -> S3WireResponse {
        if let current = MultiThreadedEventLoopGroup.currentEventLoop, group.makeIterator().contains(where: { $0 === current }) {
            throw OutpostError(.io, "an S3 request was made on the S3 client's own event loop, where waiting for it would deadlock")
        }
        var headers = HTTPHeaders()
        for (n, v) in request.headers { headers.add(name: n, value: v) }
        let req = try HTTPClient.Request(
            url: request.url, method: HTTPMethod(rawValue: request.method), headers: headers,
            body: request.body.isEmpty ? nil : .bytes(request.body))
        let response = try client.execute(request: req, deadline: .now() + timeout).wait()
        return S3WireResponse(
            status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
            body: response.body.map { Array(buffer: $0) } ?? [])
    }
}
