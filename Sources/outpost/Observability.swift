import ArgumentParser
import Foundation
import Logging
import OutpostCore
import OutpostForwarder
import OutpostHTTP
import OutpostRelay
import OutpostStore
import OutpostVault
import Synchronization

/// `--log-format` of the long-running commands (`relay serve`, `vault serve`, `agent run`).
struct LoggingOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "text (the default: swift-log's plain lines) or json: one JSON object per line on standard error (time, level, label, message, metadata with request_id and job).",
            valueName: "format"))
    var logFormat: LogFormat = .text
}

extension LogFormat: ExpressibleByArgument {}

/// A command that takes `--log-format`; `Outpost.main` sets up logging from it once the command line is parsed.
protocol LogFormatOption {
    var logging: LoggingOptions { get }
}

extension RelayCommand.Serve: LogFormatOption {}
extension VaultCommand.Serve: LogFormatOption {}
extension AgentCommand.Run: LogFormatOption {}

/// The process's log format, chosen once at start.
enum Logs {
    private static let json = Atomic<Bool>(false)

    static var isJSON: Bool { json.load(ordering: .relaxed) }

    /// Once, before any logger is made: JSON when the command takes `--log-format` and was given json. The level is
    /// OUTPOST_LOG_LEVEL's (default error); servers raise their own logger to info.
    static func bootstrap(for command: any ParsableCommand) {
        bootstrap((command as? any LogFormatOption)?.logging.logFormat ?? .text)
    }

    static func bootstrap(_ format: LogFormat) {
        json.store(format == .json, ordering: .relaxed)
        let level = Logger.Level(rawValue: ProcessInfo.processInfo.environment["OUTPOST_LOG_LEVEL"] ?? "") ?? .error
        switch format {
        case .text:
            LoggingSystem.bootstrap { label in
                var h = StreamLogHandler.standardError(label: label)
                h.logLevel = level
                return h
            }
        case .json:
            LoggingSystem.bootstrap { label in
                var h = JSONLogHandler(label: label)
                h.logLevel = level
                return h
            }
        }
    }

    /// A status line (`printErr`) as a JSON log line, so that a JSON log holds nothing else.
    static func jsonLine(_ text: String) {
        JSONLogHandler.standardError(JSONLogHandler.line(time: Date(), level: .notice, label: "outpost", message: text, metadata: [:]))
    }
}

// MARK: Metrics

/// `relay serve`'s `/metrics` listener (relay.toml's metrics_listen), or nil when none is set.
func relayMetricsServer(
    dir: RelayDataDirectory, store: Store, settings: RelayConfiguration, clock: WallClock, registered: Bool, logger: Logger
) throws -> MetricsServer? {
    guard let listen = settings.metricsListen else { return nil }
    let address = try MetricsServer.checkListen(listen, hasToken: settings.metricsTokenFile != nil, what: "metrics_listen in relay.toml")
    let token = try settings.metricsTokenFile.map { try MetricsServer.readToken(file: $0, what: "metrics_token_file in relay.toml") }
    MetricsRegistry.process.bootstrap(help: RelayMetrics.help)
    RelayMetrics.prime()
    var backlog: (@Sendable () throws -> RelayMetrics.Backlog)?
    if registered {
        let reader = BacklogReader(store: store)
        backlog = { try reader.read() }
    }
    let metrics = RelayMetrics(store: store, clock: clock, logger: logger, backlog: backlog)
    return MetricsServer(
        listen: address, token: token, setting: "metrics_listen in relay.toml", logger: logger, snapshot: { await metrics.exposition() }
    ) { bound in
        printErr("relay metrics on http://\(address.host):\(bound)/metrics\(token == nil ? "" : " (bearer token of metrics_token_file)")")
    }
}

/// `vault serve`'s `/metrics` listener (--metrics-listen), or nil when none is set.
func vaultMetricsServer(listen: String?, tokenFile: String?, vault: VaultServer, logger: Logger) throws -> MetricsServer? {
    guard let listen else {
        if tokenFile != nil { throw ValidationError("--metrics-token-file needs --metrics-listen HOST:PORT") }
        return nil
    }
    let address: (host: String, port: Int)
    do { address = try MetricsServer.checkListen(listen, hasToken: tokenFile != nil, what: "--metrics-listen") } catch let e as OutpostError {
        throw ValidationError(e.message)
    }
    let token = try tokenFile.map { try MetricsServer.readToken(file: $0, what: "--metrics-token-file") }
    MetricsRegistry.process.bootstrap(help: VaultMetrics.help)
    let metrics = VaultMetrics(registry: vault.registry, replica: vault.replica)
    return MetricsServer(listen: address, token: token, setting: "--metrics-listen", logger: logger, snapshot: { metrics.snapshot().exposition() }) {
        bound in
        printErr("vault metrics on http://\(address.host):\(bound)/metrics\(token == nil ? "" : " (bearer token of --metrics-token-file)")")
    }
}

/// The forwarding backlog from the ledger. The bytes take a scan of the index: read at most once a minute, and only
/// while points wait.
final class BacklogReader: Sendable {
    let store: Store
    private let bytes = Mutex<(at: ContinuousClock.Instant, value: Int64)?>(nil)

    init(store: Store) { self.store = store }

    func read() throws -> RelayMetrics.Backlog {
        let ledger = ForwardingLedger(store: store)
        let waiting = try ledger.entries().filter { ![.forwarded, .expired].contains($0.state) }
        guard !waiting.isEmpty else {
            bytes.withLock { $0 = nil }
            return RelayMetrics.Backlog(points: 0, bytes: 0, oldestWaiting: nil)
        }
        let now = ContinuousClock.now
        let value: Int64
        if let cached = bytes.withLock({ $0 }), now - cached.at < .seconds(60) {
            value = cached.value
        } else {
            value = try ledger.unsentBytes()
            bytes.withLock { $0 = (now, value) }
        }
        return RelayMetrics.Backlog(points: waiting.count, bytes: value, oldestWaiting: waiting.map(\.finishedAt).min())
    }
}
