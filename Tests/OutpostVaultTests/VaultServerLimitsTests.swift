import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTLS
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import OutpostCore
import OutpostForwarder
import OutpostHTTP
import OutpostTLS
import OutpostVault
import ServiceLifecycle
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A real `VaultServer` in this process, on a loopback port, with limits short enough for tests.
final class RunningVault: Sendable {
    let root: String
    let port: Int
    let certificatePEM: String
    let credential: String
    private let task: Task<Void, any Error>
    private let group: ServiceGroup

    /// Runs the server as a service, so that a test stops it as SIGTERM does (gracefully): cancelling it with
    /// connections just accepted trips a NIO precondition.
    struct Serving: Service {
        let server: VaultServer
        func run() async throws { try await server.run() }
    }

    init(limits: ConnectionLimits, putBudget: Int = VaultServer.defaultPutBudget) async throws {
        let fixture = try VaultFixture("limits")
        root = fixture.root
        certificatePEM = fixture.certificatePEM
        credential = fixture.credential
        let dir = fixture.directory
        let (ports, listening) = AsyncStream.makeStream(of: Int.self)
        let server = try VaultServer(
            directory: dir, host: "127.0.0.1", port: 0, logger: Logger(label: "vault-test"), limits: limits,
            putBudget: putBudget
        ) { listening.yield($0) }
        let group = ServiceGroup(configuration: .init(services: [Serving(server: server)], logger: Logger(label: "vault-test")))
        self.group = group
        task = Task { try await group.run() }
        var it = ports.makeAsyncIterator()
        guard let port = await it.next() else { throw VaultError(.invalid, "the test vault did not listen") }
        self.port = port
    }

    var url: String { "https://127.0.0.1:\(port)" }

    func client() throws -> HTTPClient {
        HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: .init(tlsConfiguration: try TLSIdentity.pinnedClientConfiguration(certificatePEM: certificatePEM)))
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = await task.result
        try? FileManager.default.removeItem(atPath: root)
    }
}

/// A plain TCP connection to the vault (no TLS): what an idle or hostile peer holds.
struct RawSocket {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 { throw VaultError(.invalid, "connect failed: \(errno)") }
    }

    func send(_ text: String) { _ = text.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) } }

    /// What a read gets within `seconds`: `.closed` (EOF or reset), `.data`, or `.nothing` (the wait ran out).
    enum Outcome: Equatable { case closed, data, nothing }
    func read(within seconds: Int) -> Outcome {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n > 0 { return .data }
            if n == 0 { return .closed }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK ? .nothing : .closed
        }
    }

    func close() { _ = Glibc.close(fd) }
}

@Suite(.serialized) struct VaultServerLimitsTests {
    static func limits(maxConnections: Int = 64, headerTimeout: TimeAmount = .seconds(30), minimumBodyRate: Int = 1) -> ConnectionLimits {
        ConnectionLimits(
            maxConnections: maxConnections, headerTimeout: headerTimeout, requestDeadline: .seconds(60),
            minimumBodyRate: minimumBodyRate, rateWindow: .milliseconds(500), tick: .milliseconds(100))
    }

    @Test func theRangeHeaderThatCrashedTheVaultIsAnsweredAndTheVaultRuns() async throws {
        let vault = try await RunningVault(limits: Self.limits())
        let http = try vault.client()
        let relayClient = try VaultClient(
            url: vault.url, certificatePEM: vault.certificatePEM, credential: vault.credential, logger: Logger(label: "t"))
        #expect(try await relayClient.put("k/aa/ten", Array(0..<10)))
        func get(_ range: String) async throws -> (Int, Int) {
            var req = HTTPClientRequest(url: vault.url + "/v1/objects/k/aa/ten")
            req.headers.add(name: "Authorization", value: "Bearer " + vault.credential)
            req.headers.add(name: "Range", value: range)
            let resp = try await http.execute(req, timeout: .seconds(30))
            let body = try await resp.body.collect(upTo: 1 << 20)
            return (Int(resp.status.code), body.readableBytes)
        }
        #expect(try await get("bytes=9223372036854775800-9223372036854775807").0 == 400)
        #expect(try await get("bytes=9223372036854775800-9223372036854775806").0 == 416)
        #expect(try await get("bytes=100-200").0 == 416)
        #expect(try await get("bytes=2-4") == (206, 3))
        // Asked for more than the object holds: the relay's client calls that damage, not a vault failure.
        let short = await #expect(throws: ForwarderError.self) { _ = try await relayClient.get("k/aa/ten", range: 20..<30) }
        #expect(short?.code == .tampered)
        #expect(try await relayClient.get("k/aa/ten") == Array(0..<10), "still serving")
        await relayClient.close()
        try await http.shutdown()
        await vault.stop()
    }

    @Test func aConnectionThatSendsNoRequestIsClosedSoon() async throws {
        let vault = try await RunningVault(limits: Self.limits(headerTimeout: .milliseconds(300)))
        let idle = try RawSocket(port: vault.port)
        #expect(idle.read(within: 30) == .closed, "an idle socket is closed after the header timeout, not after minutes")
        idle.close()
        // Half a request line, never finished, is no request either.
        let trickle = try RawSocket(port: vault.port)
        trickle.send("\u{16}\u{03}")
        #expect(trickle.read(within: 30) == .closed)
        trickle.close()
        await vault.stop()
    }

    @Test func connectionsBeyondTheCapWaitUntilOneCloses() async throws {
        let vault = try await RunningVault(limits: Self.limits(maxConnections: 2))
        // Two clients, each holding one kept-alive connection after a request.
        let a = try vault.client(), b = try vault.client()
        for c in [a, b] {
            let resp = try await c.execute(HTTPClientRequest(url: vault.url + "/healthz"), timeout: .seconds(30))
            #expect(resp.status.code == 200)
            _ = try await resp.body.collect(upTo: 1024)
        }
        // A third connection is not accepted: bytes that are not TLS get no answer while the two stay open...
        let third = try RawSocket(port: vault.port)
        third.send("not TLS\r\n\r\n")
        #expect(third.read(within: 1) == .nothing, "not accepted while the vault is at its cap")
        // ...and one as soon as one of them closes.
        try await a.shutdown()
        #expect(third.read(within: 30) != .nothing, "accepted (and refused as not TLS) once a place is free")
        third.close()
        try await b.shutdown()
        await vault.stop()
    }

    @Test func aBodySentTooSlowlyIsCutOff() async throws {
        let vault = try await RunningVault(limits: Self.limits(minimumBodyRate: 10_000))
        let http = try vault.client()
        let (body, more) = AsyncStream.makeStream(of: ByteBuffer.self)
        more.yield(ByteBuffer(bytes: [UInt8](repeating: 7, count: 10)))
        var req = HTTPClientRequest(url: vault.url + "/v1/objects/k/aa/slow")
        req.method = .PUT
        req.headers.add(name: "Authorization", value: "Bearer " + vault.credential)
        req.body = .stream(body, length: .known(Int64(100_000)))
        let started = ContinuousClock.now
        await #expect(throws: (any Error).self) {
            let resp = try await http.execute(req, timeout: .seconds(300))
            _ = try await resp.body.collect(upTo: 1 << 20)
        }
        // Generous: other suites that block the cooperative pool can delay the vault's request handler.
        #expect(ContinuousClock.now - started < .seconds(150), "cut off by the vault, not by the client's own timeout")
        more.finish()
        try await http.shutdown()
        await vault.stop()
    }

    @Test func aVaultWithAnotherCertificateIsAPinFailure() async throws {
        let vault = try await RunningVault(limits: Self.limits())
        let other = try TLSIdentity.selfSigned(commonName: "impostor", hosts: ["localhost"])
        let client = try VaultClient(url: vault.url, certificatePEM: other.certificatePEM, credential: vault.credential, logger: Logger(label: "t"))
        let e = await #expect(throws: ForwarderError.self) { _ = try await client.list(prefix: "k/") }
        #expect(e?.code == .refused, "not retried as a network failure: \(e?.message ?? "")")
        #expect(e?.message.contains("not the one pinned") == true, "\(e?.message ?? "")")
        await client.close()
        await vault.stop()
    }
}

/// The connection deadlines as a state machine, with explicit times.
@Suite struct ConnectionDeadlinesTests {
    let limits = ConnectionLimits(
        maxConnections: 8, headerTimeout: .seconds(10), requestDeadline: .seconds(100), minimumBodyRate: 1000,
        rateWindow: .seconds(10))
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    func at(_ s: Int64) -> NIODeadline { t0 + .seconds(s) }

    @Test func noRequestWithinTheHeaderTimeoutCloses() {
        var d = ConnectionDeadlines(limits: limits, now: t0)
        #expect(d.check(now: at(9)) == .keepOpen)
        guard case .close = d.check(now: at(11)) else { Issue.record("an idle connection is closed"); return }
    }

    @Test func aKeptAliveConnectionGetsTheHeaderTimeoutAgainAfterEachResponse() {
        var d = ConnectionDeadlines(limits: limits, now: t0)
        d.received(.head, now: at(5))
        d.received(.end, now: at(5))
        #expect(d.check(now: at(50)) == .keepOpen, "the server works on the request")
        d.responseEnded(now: at(50))
        #expect(d.check(now: at(59)) == .keepOpen)
        guard case .close = d.check(now: at(61)) else { Issue.record("idle after the response"); return }
    }

    @Test func aTrickledBodyIsCutOffButWaitingForTheServerIsNot() {
        var d = ConnectionDeadlines(limits: limits, now: t0)
        d.received(.head, now: at(1))
        // The server holds the request (no read asked): 50 s without a byte costs the client nothing.
        #expect(d.check(now: at(51)) == .keepOpen)
        // It asks; the client sends 2 bytes per 4 s.
        d.readRequested(now: at(51))
        for s in stride(from: Int64(55), through: 63, by: 4) {
            d.received(.body(bytes: 2), now: at(s))
            d.readRequested(now: at(s))
        }
        guard case .close(let why) = d.check(now: at(63)) else { Issue.record("a trickle is cut off"); return }
        #expect(why.contains("below the minimum"))
    }

    @Test func aSteadyBodyPassesAndTheDeadlineStillHolds() {
        var d = ConnectionDeadlines(limits: limits, now: t0)
        d.received(.head, now: at(0))
        for s in 0..<99 {
            d.readRequested(now: at(Int64(s)))
            d.received(.body(bytes: 5000), now: at(Int64(s) + 1))
            #expect(d.check(now: at(Int64(s) + 1)) == .keepOpen)
        }
        guard case .close = d.check(now: at(101)) else { Issue.record("the request deadline"); return }
    }
}

@Suite struct ByteBudgetTests {
    @Test func aReservationWaitsUntilTheBudgetHasRoomFirstComeFirstServed() async throws {
        let budget = ByteBudget(bytes: 10)
        final class Log: Sendable {
            let lines = Mutex<[String]>([])
            func add(_ s: String) { lines.withLock { $0.append(s) } }
        }
        let order = Log()
        let (holding, held) = AsyncStream.makeStream(of: Void.self)
        let (release, released) = AsyncStream.makeStream(of: Void.self)
        let first = Task {
            await budget.withReservation(8) {
                order.add("first in")
                held.yield()
                var it = release.makeAsyncIterator()
                _ = await it.next()
                order.add("first out")
            }
        }
        var h = holding.makeAsyncIterator()
        _ = await h.next()
        let second = Task { await budget.withReservation(5) { order.add("second in") } }
        while budget.waiting == 0 { await Task.yield() }
        let third = Task { await budget.withReservation(1) { order.add("third in") } }
        while budget.waiting < 2 { await Task.yield() }
        #expect(budget.available == 2, "the small third one waits behind the second though it would fit")
        released.yield()
        await first.value
        await second.value
        await third.value
        let seen = order.lines.withLock { $0 }
        #expect(Array(seen.prefix(2)) == ["first in", "first out"], "nobody got in while the first held 8 of 10")
        #expect(Set(seen.dropFirst(2)) == ["second in", "third in"])
        #expect(budget.available == 10)
        #expect(await budget.withReservation(1 << 30) { budget.available } == 0, "a reservation larger than the budget takes all of it")
    }
}

/// The vault client's TLS failures (issue 8): both error types NIOSSL uses mean "not the pinned vault".
@Suite struct VaultClientPinTests {
    /// A TLS peer that aborts after the client's side of the handshake (here: one demanding a client certificate)
    /// surfaces as a bare `BoringSSLError`, which the client used to retry as a network outage and report as
    /// "could not be reached".
    @Test func aBoringSSLErrorIsAPinFailureNotAnOutage() async throws {
        let identity = try TLSIdentity.selfSigned(commonName: "impostor", hosts: ["localhost"])
        var config = try identity.serverConfiguration()
        config.certificateVerification = .noHostnameVerification
        config.trustRoots = .certificates(
            try NIOSSLCertificate.fromPEMBytes(Array(try TLSIdentity.selfSigned(commonName: "x", hosts: ["x"]).certificatePEM.utf8)))
        let (ports, listening) = AsyncStream.makeStream(of: Int.self)
        let router = Router()
        router.get("/v1/list") { _, _ in "[]" }
        let app = Application(
            router: router, server: try .tls(.http1(), tlsConfiguration: config),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { listening.yield($0.localAddress?.port ?? 0) })
        let group = ServiceGroup(configuration: .init(services: [app], logger: Logger(label: "impostor")))
        let task = Task { try await group.run() }
        var it = ports.makeAsyncIterator()
        let port = try #require(await it.next())
        let client = try VaultClient(
            url: "https://127.0.0.1:\(port)", certificatePEM: identity.certificatePEM, credential: "x", logger: Logger(label: "t"))
        let e = await #expect(throws: ForwarderError.self) { _ = try await client.list(prefix: "k/") }
        #expect(e?.code == .refused, "\(e?.message ?? "")")
        #expect(e?.message.contains("not the one pinned") == true)
        await client.close()
        await group.triggerGracefulShutdown()
        _ = await task.result
    }
}
