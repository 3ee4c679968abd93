import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OutpostCore
import OutpostHTTP
import Synchronization
import Testing

/// `--log-format json` and `/metrics` (issue 13): the JSON log handler's lines, the request middleware's labels,
/// and the metrics listener's token.
@Suite struct ObservabilityTests {
    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
        var all: [String] { lines.withLock { $0 } }
    }

    func objects(_ lines: [String]) throws -> [[String: Any]] {
        try lines.map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
        }
    }

    @Test func jsonLogLinesCarryTimeLevelLabelMessageMetadataAndTheRequestAndJob() async throws {
        let sink = Lines()
        var logger = Logger(label: "outpost.test") { label in
            JSONLogHandler(label: label) { line in sink.lines.withLock { $0.append(line) } }
        }
        logger[metadataKey: "machine"] = "web1"
        logger.debug("below the level: not written")
        await LogContext.$requestID.withValue("req-7") {
            LogContext.$job.withValue(42) {
                logger.warning(
                    "a \"quoted\"\nmessage\twith\u{1}controls",
                    metadata: ["bytes": "\(12)", "nested": ["list": ["a", "b"], "inner": "x"], "machine": "web2"])
            }
        }
        logger.info("outside any request")
        let lines = sink.all
        #expect(lines.count == 2, "\(lines)")
        #expect(lines.allSatisfy { !$0.contains("\n") })
        let parsed = try objects(lines)
        #expect(parsed.allSatisfy { Set($0.keys) == ["time", "level", "label", "message", "metadata"] })
        let first = parsed[0]
        #expect(first["level"] as? String == "warning" && first["label"] as? String == "outpost.test")
        #expect(first["message"] as? String == "a \"quoted\"\nmessage\twith\u{1}controls")
        let time = try #require(first["time"] as? String)
        #expect(time.hasSuffix("Z") && time.contains("."), "UTC with milliseconds: \(time)")
        #expect(try Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(time).timeIntervalSinceNow > -60)
        let metadata = try #require(first["metadata"] as? [String: Any])
        #expect(metadata["request_id"] as? String == "req-7" && metadata["job"] as? String == "42")
        #expect(metadata["machine"] as? String == "web2", "the line's metadata wins over the logger's")
        #expect(metadata["bytes"] as? String == "12")
        let nested = try #require(metadata["nested"] as? [String: Any])
        #expect(nested["list"] as? [String] == ["a", "b"] && nested["inner"] as? String == "x")
        let second = try #require(parsed[1]["metadata"] as? [String: Any])
        #expect(second["request_id"] == nil && second["job"] == nil && second["machine"] as? String == "web1")
    }

    /// A router as both servers build it: the metrics middleware first, then the error middleware.
    func router(_ registry: MetricsRegistry) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: RequestMetricsMiddleware(registry: registry))
        router.add(middleware: ErrorMiddleware(logger: Logger(label: "test"), wording: .init(tooLarge: "too large", malformedBody: "malformed")))
        router.get("/items/{id}") { _, _ -> Response in .text(LogContext.requestID ?? "none") }
        router.get("/broken") { _, _ -> Response in throw HTTPFailure(.conflict, "no") }
        return router
    }

    @Test func requestsAreCountedAndTimedByRoutePatternMethodAndStatusWithARequestID() async throws {
        let registry = MetricsRegistry()
        try await Application(router: router(registry)).test(.router) { client in
            let a = try await client.execute(uri: "/items/7", method: .get)
            #expect(a.status == .ok && String(buffer: a.body) != "none", "the handler runs with its request id")
            _ = try await client.execute(uri: "/items/8", method: .get)
            #expect(try await client.execute(uri: "/broken", method: .get).status == .conflict)
            #expect(try await client.execute(uri: "/no/such/path", method: .get).status == .notFound)
        }
        let text = String(decoding: registry.exposition(), as: UTF8.self)
        #expect(text.contains("# TYPE outpost_http_requests_total counter"), "\(text)")
        #expect(text.contains("# TYPE outpost_http_request_duration_seconds histogram"))
        #expect(text.contains(#"outpost_http_requests_total{route="/items/{id}",method="GET",status="200"} 2"#), "\(text)")
        #expect(text.contains(#"outpost_http_requests_total{route="/broken",method="GET",status="409"} 1"#))
        #expect(text.contains(#"outpost_http_requests_total{route="unmatched",method="GET",status="404"} 1"#))
        #expect(text.contains(#"outpost_http_request_duration_seconds_count{route="/items/{id}",method="GET",status="200"} 2"#))
        #expect(!text.contains("/items/7") && !text.contains("/no/such/path"), "never the path asked for")
    }

    @Test func theMetricsListenerServesOnlyMetricsAndOnlyWithItsToken() async throws {
        let registry = MetricsRegistry()
        let snapshot = MetricsSnapshot()
        snapshot.gauge("outpost_test_things", "Things.", 3, labels: [("machine", "web1")])
        let bytes = snapshot.exposition()
        let server = MetricsServer(
            listen: ("127.0.0.1", 0), token: "0123456789abcdef-token", registry: registry, setting: "test", logger: Logger(label: "test"),
            snapshot: { bytes })
        try await Application(router: server.buildRouter()).test(.router) { client in
            let none = try await client.execute(uri: "/metrics", method: .get)
            #expect(none.status == .unauthorized && none.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
            let wrong = try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer 0123456789abcdef-tokem"])
            #expect(wrong.status == .unauthorized)
            let short = try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer 0123"])
            #expect(short.status == .unauthorized)
            let ok = try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer 0123456789abcdef-token"])
            #expect(ok.status == .ok && ok.headers[.contentType] == MetricsServer.contentType)
            let text = String(buffer: ok.body)
            #expect(text.contains("# HELP outpost_test_things Things.") && text.contains(#"outpost_test_things{machine="web1"} 3.0"#), "\(text)")
            #expect(try await client.execute(uri: "/v1/session", method: .get).status == .notFound)
        }
    }

    @Test func aMetricsAddressOffLoopbackNeedsAToken() throws {
        #expect(try MetricsServer.checkListen("127.0.0.1:9440", hasToken: false, what: "metrics_listen") == ("127.0.0.1", 9440))
        #expect(try MetricsServer.checkListen("[::1]:9440", hasToken: false, what: "metrics_listen") == ("::1", 9440))
        #expect(try MetricsServer.checkListen("0.0.0.0:9440", hasToken: true, what: "metrics_listen") == ("0.0.0.0", 9440))
        let open = #expect(throws: OutpostError.self) { try MetricsServer.checkListen("0.0.0.0:9440", hasToken: false, what: "metrics_listen") }
        #expect(open?.message.contains("not a loopback address") == true && open?.message.contains("metrics_listen") == true)
        let bad = #expect(throws: OutpostError.self) { try MetricsServer.checkListen("9440", hasToken: false, what: "--metrics-listen") }
        #expect(bad?.message.contains("--metrics-listen \"9440\" must be HOST:PORT") == true)
        let dir = NSTemporaryDirectory() + "/outpost-token-\(UUID().uuidString.prefix(8))"
        try "short\n".write(toFile: dir, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: OutpostError.self) { try MetricsServer.readToken(file: dir, what: "metrics_token_file") }
        try "0123456789abcdef0123\n".write(toFile: dir, atomically: true, encoding: .utf8)
        #expect(try MetricsServer.readToken(file: dir, what: "metrics_token_file") == "0123456789abcdef0123")
    }
}
