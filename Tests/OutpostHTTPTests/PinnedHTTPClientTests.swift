import Foundation
import Hummingbird
import HummingbirdTLS
import HummingbirdTesting
import Logging
import NIOCore
import NIOHTTP1
import OutpostCore
import OutpostHTTP
import OutpostTLS
import Synchronization
import Testing

/// The one client of both servers: retries what is transient and announces it, passes other answers on, and
/// never retries a certificate that is not the pinned one.
@Suite struct PinnedHTTPClientTests {
    struct Failed: Error, Equatable { let what: String }

    /// The reasons of the retries a client announced.
    final class Retries: Sendable {
        private let reasons = Mutex<[String]>([])
        func add(_ reason: String) { reasons.withLock { $0.append(reason) } }
        var all: [String] { reasons.withLock { $0 } }
    }

    /// A client whose failures say which failure they are, and which records each retry's reason.
    func client(_ base: String, tls: TLSConfiguration? = nil, attempts: Int = 3, retries: Retries? = nil) -> PinnedHTTPClient {
        let wording = PinnedHTTPClient.Wording(
            pinFailure: { _, _ in Failed(what: "pin") },
            unreachable: { _, attempts, _ in Failed(what: "unreachable after \(attempts)") },
            retrying: { _, reason, _ in retries?.add(reason) })
        return PinnedHTTPClient(
            baseURL: base, credential: "secret-credential", tls: tls, readTimeout: .seconds(10), maxAttempts: attempts,
            logger: Logger(label: "test"), wording: wording)
    }

    func call(_ path: String) -> PinnedHTTPClient.Call { PinnedHTTPClient.Call(.GET, path, timeout: .seconds(10), maxResponse: 1 << 20) }

    @Test func transientAnswersAreRetriedAndOthersPassedOn() async throws {
        let calls = Mutex(0)
        let router = Router()
        router.get("/flaky") { _, _ -> Response in
            let n = calls.withLock {
                $0 += 1; return $0
            }
            return n == 1 ? Response(status: .serviceUnavailable) : .text("fine")
        }
        router.get("/refused") { _, _ -> Response in throw HTTPFailure(.unauthorized, "not you") }
        router.get("/who") { request, _ -> Response in .text(request.headers[.authorization] ?? "nobody") }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { live in
            let retries = Retries()
            let http = client("http://127.0.0.1:\(live.port!)", retries: retries)
            let flaky = try await http.send(call("/flaky"))
            #expect(flaky.status == 200 && flaky.body == Array("fine".utf8))
            #expect(retries.all == ["HTTP 503"])
            let refused = try await http.send(call("/refused"))
            #expect(refused.status == 401 && PinnedHTTPClient.message(of: refused.body, limit: 100) == "not you")
            #expect(try await http.send(call("/who")).body == Array("Bearer secret-credential".utf8))
            var open = call("/who")
            open.authenticated = false
            #expect(try await http.send(open).body == Array("nobody".utf8))
            await http.close()
        }
    }

    @Test func aServerThatIsNotThereIsUnreachableAfterEveryAttempt() async throws {
        let retries = Retries()
        let http = client("http://127.0.0.1:1", attempts: 2, retries: retries)
        await #expect(throws: Failed(what: "unreachable after 2")) { _ = try await http.send(call("/healthz")) }
        #expect(retries.all.count == 1)
        await http.close()
    }

    @Test func aCertificateOtherThanThePinnedOneIsNeverRetried() async throws {
        let served = try TLSIdentity.selfSigned(commonName: "server", hosts: ["localhost"])
        let pinned = try TLSIdentity.selfSigned(commonName: "pinned", hosts: ["localhost"])
        let router = Router()
        router.get("/healthz") { _, _ in "ok" }
        let app = Application(
            router: router, server: try .tls(.http1(), tlsConfiguration: try served.serverConfiguration()),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { live in
            let retries = Retries()
            let http = client(
                "https://127.0.0.1:\(live.port!)", tls: try TLSIdentity.pinnedClientConfiguration(certificatePEM: pinned.certificatePEM),
                retries: retries)
            await #expect(throws: Failed(what: "pin")) { _ = try await http.send(call("/healthz")) }
            #expect(retries.all.isEmpty)
            await http.close()
        }
    }
}
