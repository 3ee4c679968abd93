import Foundation
import OutpostCore
import OutpostRelay
import Testing

/// relay.toml's metrics_listen and metrics_token_file (docs/metrics.md): off unless set, a loopback address or a
/// token, and errors that name the key.
@Suite struct MetricsSettingsTests {
    func load(_ text: String) throws -> RelayConfiguration {
        let path = NSTemporaryDirectory() + "/outpost-metrics-config-\(UUID().uuidString.prefix(8)).toml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try RelayConfiguration.load(path: path)
    }

    func refusal(_ text: String) -> String {
        do {
            _ = try load(text)
            return "loaded"
        } catch let e as OutpostError {
            return e.code == .config ? e.message : "code \(e.code): \(e.message)"
        } catch { return "\(error)" }
    }

    @Test func metricsAreOffUnlessSetAndTakeALoopbackAddressOrAToken() throws {
        let none = try load("")
        #expect(none.metricsListen == nil && none.metricsTokenFile == nil)
        #expect(try load(#"metrics_listen = "127.0.0.1:9440""#).metricsListen == "127.0.0.1:9440")
        let open = try load(
            """
            metrics_listen = "0.0.0.0:9440"
            metrics_token_file = "/etc/outpost/metrics.token"
            """)
        #expect(open.metricsListen == "0.0.0.0:9440" && open.metricsTokenFile == "/etc/outpost/metrics.token")
    }

    @Test func badMetricsSettingsAreRefusedNamingTheKey() {
        #expect(refusal(#"metrics_listen = "0.0.0.0:9440""#).contains("metrics_listen \"0.0.0.0:9440\" is not a loopback address"))
        #expect(refusal(#"metrics_listen = "9440""#).contains("metrics_listen \"9440\" must be HOST:PORT"))
        #expect(refusal(#"metrics_listen = "127.0.0.1:70000""#).contains("must be HOST:PORT"))
        #expect(refusal(#"metrics_token_file = "/etc/outpost/metrics.token""#).contains("metrics_token_file is set but metrics_listen is not"))
        #expect(refusal("listen = \"127.0.0.1:8440\"\nmetrics_listen = \"127.0.0.1:8440\"").contains("metrics_listen must differ from listen"))
    }
}
