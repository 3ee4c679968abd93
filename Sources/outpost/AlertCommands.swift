import ArgumentParser
import Foundation
import Logging
import OutpostCore
import OutpostRelay
import OutpostStore

extension RelayCommand {
    /// `outpost relay alerts` (issue 12): what is wrong now, what was, and deliveries that failed.
    struct Alerts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the relay's open alerts (and, with --since, those cleared), and alert deliveries that failed.",
            discussion: """
                `relay serve` raises and clears alerts by itself every [alerts] check_interval_seconds: a job failed or finished \
                with warnings, a missed backup, forwarding lag, an unreachable vault, damage found by check or verify-vault, \
                low disk. Each opening and clearing is sent once to the webhook and the mail server of relay.toml's [alerts]. \
                --test queues a test notification for every channel and sends it now. Exit 0: no open alert; 3: alerts \
                are open (a script's check); 64: a bad [alerts] configuration; 21: --test could not deliver.
                """)
        @OptionGroup var relay: RelayOptions
        @Option(help: ArgumentHelp("Also alerts opened at or after this time, cleared or not (YYYY-MM-DD or ISO 8601).", valueName: "time"))
        var since: String?
        @Flag(help: "Print JSON.") var json = false
        @Flag(help: "Send a test notification to every configured channel now, and report each delivery.") var test = false

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let store = try Store.open(at: dir.storePath, purpose: "`outpost relay alerts`")
            let book = AlertBook(store: store)
            if test { try await sendTest(dir: dir, store: store, book: book); return }
            let after = try since.map(parseSince)
            let alerts = try after.map { try book.history(since: $0) } ?? book.open()
            let troubled = try book.troubled()
            if json {
                struct Out: Encodable {
                    var alerts: [Alert]
                    var failedDeliveries: [AlertDelivery]
                }
                try printJSON(Out(alerts: alerts, failedDeliveries: troubled))
            } else {
                if alerts.isEmpty { print(after == nil ? "no open alerts" : "no alerts since then") }
                for a in alerts {
                    let state = a.clearedAt.map { "cleared \($0.formatted(.iso8601))" } ?? "OPEN"
                    print("\(a.id)  \(a.openedAt.formatted(.iso8601))  \(a.kind.rawValue)  \(a.subject)  \(state)")
                    print("    \(Terminal.escaped(a.message))")
                }
                if !troubled.isEmpty {
                    print("deliveries that failed:")
                    for d in troubled {
                        print(
                            "  alert \(d.alert) \(d.event) by \(d.channel): \(d.state == .failed ? "failed for good" : "retried at \(d.nextAt.formatted(.iso8601))") after \(d.attempts) attempts: \(Terminal.escaped(d.lastError ?? ""))"
                        )
                    }
                }
            }
            if alerts.contains(where: { $0.clearedAt == nil }) { throw CommandExit(code: .partialBackup) }
        }

        func sendTest(dir: RelayDataDirectory, store: Store, book: AlertBook) async throws {
            let settings = try dir.configuration()
            let dispatcher = try AlertDispatcher(
                store: store, settings: settings.alerts, relayName: ProcessInfo.processInfo.hostName, logger: Logger(label: "outpost.alerts"))
            guard !dispatcher.channels.isEmpty else {
                throw RelayError(.config, "relay.toml's [alerts] names no webhook_url and no smtp_host: there is nowhere to send alerts")
            }
            let alert = try book.test(channels: dispatcher.channels, now: Date())
            await dispatcher.deliverDue(now: Date())
            await dispatcher.shutdown()
            var failed = false
            for d in try book.deliveries(alert: alert.id) {
                if d.state == .delivered {
                    print("\(d.channel): delivered")
                } else {
                    failed = true
                    print("\(d.channel): not delivered: \(Terminal.escaped(d.lastError ?? "?"))")
                }
            }
            if failed { throw CommandExit(code: .remoteError) }
        }
    }
}
