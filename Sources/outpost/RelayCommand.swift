import ArgumentParser
import Foundation
import Logging
import OutpostClient
import OutpostConsole
import OutpostCore
import OutpostCrypto
import OutpostForwarder
import OutpostHTTP
import OutpostRelay
import OutpostStore
import OutpostTLS
import ServiceLifecycle

struct RelayOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The relay's data directory.", valueName: "dir")) var data: String
    var directory: RelayDataDirectory { RelayDataDirectory(data) }
}

struct RelayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "Run and administer the branch relay (the backup server protected machines push to).",
        subcommands: [
            Init.self, Serve.self, AddMachine.self, Machines.self, RemoveMachine.self, Fingerprint.self, Check.self,
            Register.self, ChangePassphrase.self, Forward.self, Forwarding.self, VerifyVault.self, Rebuild.self, GC.self, Retention.self, Prune.self,
            Points.self, Restore.self, Group.self, Jobs.self, JobDetail.self, BackupNow.self, Alerts.self, Admin.self,
        ]
    )

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a relay data directory: store, self-signed certificate, relay.toml.")
        @OptionGroup var relay: RelayOptions
        @Option(help: "Host names for the certificate (repeatable).") var hostname: [String] = []

        func run() async throws {
            let hosts = hostname.isEmpty ? ["localhost", ProcessInfo.processInfo.hostName] : hostname
            let fp = try relay.directory.initialize(hosts: hosts)
            printErr(
                "created relay in \(relay.directory.root); edit \(relay.directory.configPath) and start it with `outpost relay serve --data \(relay.directory.root)`"
            )
            printErr("certificate SHA-256 fingerprint (give it to `outpost enroll --fingerprint`):")
            print(fp)
        }
    }

    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the relay until SIGTERM or SIGINT.")
        @OptionGroup var relay: RelayOptions
        @Option(help: "HOST:PORT to listen on (overrides relay.toml; port 0 picks a free one).") var listen: String?
        @Option(help: "Settings file (default: DATA/relay.toml).") var config: String?
        @Flag(help: "Serve plain HTTP instead of HTTPS (only on a trusted network; credentials travel in clear).") var insecureHttp = false
        @Option(help: ArgumentHelp("Write the port to this file once listening (for scripts and tests).", valueName: "file")) var portFile: String?
        @Option(help: ArgumentHelp("HOST:PORT of the web console (overrides relay.toml's console_listen).", valueName: "host:port"))
        var consoleListen: String?
        @Option(help: ArgumentHelp("Write the console's port to this file once it listens.", valueName: "file")) var consolePortFile: String?

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            // One relay per data directory, and no local writer beside it; held until the process ends.
            let serving = try ServingLock(store: dir.storePath, role: .relay)
            defer { withExtendedLifetime(serving) {} }
            var settings = try dir.configuration(file: config)
            if let listen { settings.listen = listen }
            let (host, port) = try RelayConfiguration.parseListen(settings.listen)
            let identity = insecureHttp ? nil : try dir.identity(settings)
            var logger = Logger(label: "outpost.relay")
            logger.logLevel = Logger.Level(rawValue: ProcessInfo.processInfo.environment["OUTPOST_LOG_LEVEL"] ?? "") ?? .info
            let store = try Store.open(at: dir.storePath, purpose: "`outpost relay serve`", logger: logger)
            // Jobs a killed relay left running are failed now (relay jobs).
            try? JobLog(store: store).markAbandoned()
            // The embedded forwarder runs when the relay is registered with a vault.
            var services: [any Service] = []
            var tier2: (@Sendable (BlobID) async throws -> PreparedBlob?)?
            var forwarding: ForwardingService?
            var vaultForwarder: Forwarder?
            if FileManager.default.fileExists(atPath: VaultLink.paths(dir.root).link) {
                let forwarder = try makeForwarder(dir: dir, store: store, settings: settings, logger: logger)
                vaultForwarder = forwarder
                let schedule = ForwardingSchedule(
                    afterEachPoint: settings.forwardAfterEachPoint,
                    times: settings.forwardTimes.compactMap(RelayConfiguration.parseClock))
                let relaySettings = settings
                let f = ForwardingService(forwarder: forwarder, schedule: schedule, logger: logger) {
                    await sendStatus(forwarder, settings: relaySettings)
                }
                forwarding = f
                services.append(f)
                tier2 = { id in try await forwarder.fetch(id) }
            }
            // `/metrics` on a listener of its own when metrics_listen is set (docs/metrics.md).
            if let metrics = try relayMetricsServer(
                dir: dir, store: store, settings: settings, clock: .fromEnvironment(), registered: vaultForwarder != nil, logger: logger)
            {
                services.append(metrics)
            }
            // The relay tier's daily prune at prune_time (a relay with no rule prunes nothing).
            let retention = settings.retention
            let retainInVault = vaultForwarder
            let pruneLogger = logger
            services.append(
                // Then the online gc, beside the pushes, with its default grace.
                PruneService(
                    at: RelayConfiguration.parseClock(settings.pruneTime) ?? 180, logger: logger,
                    gc: {
                        try JobLog(store: store).run(.gc, summary: { r in ("\(r.deadBlobs) unused blobs removed", r.bytesFreed) }) {
                            try GarbageCollector(store: store, treeRoots: try PrunedPoints(store: store).roots()).run()
                        }
                    }
                ) { now in
                    // The relay tier, then the vault tier in the vault (docs/vault.md §19); a job (relay jobs).
                    try await JobLog(store: store).run(
                        .prune, summary: { plan in ("\(plan.count(relay: "leaves")) points left the relay; vault: \(plan.vaultTier)", 0) }
                    ) {
                        let pruner = RelayPruner(store: store, file: retention)
                        var plan = try pruner.apply(try pruner.plan(forwarding: try forwardingStates(dir, store), now: now))
                        if let f = retainInVault {
                            // A vault that refuses or cannot be reached leaves the relay tier applied; tried again tomorrow.
                            do { _ = try await applyVaultTier(&plan, forwarder: f, store: store, dryRun: false) } catch {
                                plan.vaultTier = "failed, tried again at the next prune: \(error)"
                                pruneLogger.warning("applying the vault tier in the vault failed", metadata: ["error": "\(error)"])
                            }
                        }
                        return plan
                    }
                })
            // Alerts (issue 12): the relay's own checks, and the forwarder's (lag, vault reachability).
            let clock = WallClock.fromEnvironment()
            if clock.isShifted { logger.warning("the clock is a test's (OUTPOST_TEST_CLOCK_FILE is set)") }
            let dispatcher = try AlertDispatcher(store: store, settings: settings.alerts, relayName: ProcessInfo.processInfo.hostName, logger: logger)
            services.append(
                AlertMonitor(
                    store: store, settings: settings.alerts, jobs: settings.jobs, clock: clock, logger: logger, dispatcher: dispatcher,
                    providers: vaultForwarder.map { f in forwarderAlerts(f, dir: dir, store: store, lagHours: settings.alerts.forwardingLagHours) }
                        ?? []))
            let notify = forwarding
            let service = Relay(
                store: store, configuration: settings, logger: logger, tier2: tier2, committed: { notify?.pointCommitted() }, clock: clock)
            // The web console (issue 13), on its own listener, when console_listen (or --console-listen) is set.
            if let listen = consoleListen ?? settings.consoleListen {
                let (consoleHost, consolePort) = try RelayConfiguration.parseListen(listen)
                var forwardNow: (@Sendable () -> Void)?
                if let f = forwarding { forwardNow = { @Sendable in f.pointCommitted() } }
                let registered = vaultForwarder != nil
                let vaultStatus: @Sendable () -> String = {
                    registered ? "registered; see the alerts for lag and reachability" : "not registered"
                }
                let console = try ConsoleServer(
                    relay: service, hooks: ConsoleHooks(vault: tier2, forwardNow: forwardNow, vaultStatus: vaultStatus),
                    relayName: ProcessInfo.processInfo.hostName, logger: logger)
                let consoleScheme = insecureHttp ? "http" : "https"
                let consolePortFile = self.consolePortFile
                services.append(
                    try console.service(host: consoleHost, port: consolePort, identity: identity) { bound in
                        printErr("console listening on \(consoleScheme)://\(consoleHost):\(bound)")
                        if let consolePortFile { try? DurableFile.write(Array("\(bound)\n".utf8), to: consolePortFile, mode: 0o644) }
                    })
            }
            let portFile = self.portFile
            let scheme = insecureHttp ? "http" : "https"
            let scope = settings.dedupScope.rawValue
            let server = RelayServer(relay: service, identity: identity, host: host, port: port, logger: logger, services: services) { bound in
                printErr("relay listening on \(scheme)://\(host):\(bound) (dedup scope: \(scope))")
                if let portFile { try? "\(bound)\n".write(toFile: portFile, atomically: true, encoding: .utf8) }
            }
            do { try await server.run() } catch {
                await dispatcher.shutdown()
                throw listenFailure(error, host: host, port: port, setting: "listen in relay.toml")
            }
            await dispatcher.shutdown()
        }

        @OptionGroup var logging: LoggingOptions
    }

    /// The forwarder's alert conditions: points waiting too long to be forwarded, and a vault that cannot be reached.
    static func forwarderAlerts(_ f: Forwarder, dir: RelayDataDirectory, store: Store, lagHours: Int) -> [@Sendable (Date) async -> [AlertCondition]]
    {
        [
            { now in
                guard let states = try? forwardingStates(dir, store), let points = try? store.index.points(machine: nil) else { return [] }
                let waiting = points.filter { p in !["forwarded", "expired"].contains(states[p.id] ?? "pending") }
                guard let oldest = waiting.map(\.point.finishedAt).min(), now.timeIntervalSince(oldest) > Double(lagHours) * 3600 else { return [] }
                return [
                    AlertCondition(
                        .forwardingLag, "vault",
                        "\(waiting.count) recovery points wait to be forwarded to the vault; the oldest finished \(oldest.formatted(.iso8601)), more than [alerts] forwarding_lag_hours \(lagHours) h ago: see `outpost relay forwarding`"
                    )
                ]
            },
            { _ in
                do {
                    _ = try await f.vault.list(prefix: "verifier")
                    return []
                } catch {
                    return [AlertCondition(.vaultUnreachable, "vault", "the vault cannot be reached: \(error)")]
                }
            },
        ]
    }

    struct AddMachine: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add-machine",
            abstract: "Protect a new machine: prints a one-time enrollment token alone on stdout."
        )
        @OptionGroup var relay: RelayOptions
        @Option(help: "Hours the token stays valid, 1 to 720 (default: relay.toml's token_valid_hours, 24).") var validHours: Int?
        @Argument(help: "The machine's name (letters, digits, '.', '-', '_'; starting with a letter or digit).") var name: String

        func validate() throws {
            try validateMachineName(name)
            if let validHours, !EnrollmentToken.validHours.contains(validHours) {
                throw ValidationError(
                    "--valid-hours must be \(EnrollmentToken.validHours.lowerBound) to \(EnrollmentToken.validHours.upperBound) (hours), not \(validHours)"
                )
            }
        }

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let hours = try validHours ?? dir.configuration().tokenValidHours
            let store = try Store.open(at: dir.storePath, purpose: "`outpost relay add-machine`")
            let token = RelayAPI.randomSecret()
            let expires = Date().addingTimeInterval(Double(hours) * 3600)
            try MachineCatalog(store: store).addMachine(name, token: token, expiresAt: expires)
            printErr(
                "machine \(name) added; put the token below into a file on it (mode 0600) and run `outpost enroll --relay https://RELAY:PORT --token-file FILE --fingerprint \((try? dir.identity(dir.configuration()).fingerprint) ?? "FINGERPRINT")` before \(expires.formatted(.iso8601))"
            )
            print(token)
        }
    }

    struct Machines: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List protected machines with their last recovery point.")
        @OptionGroup var relay: RelayOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try relay.directory.requireRelay()
            let store = try Store.open(at: relay.directory.storePath, purpose: "`outpost relay machines`")
            let list = try MachineCatalog(store: store).machines()
            if json { try printJSON(list); return }
            print("MACHINE           STATE       POINTS  LAST RECOVERY POINT")
            for m in list {
                let state = m.removedAt != nil ? "removed" : m.enrolledAt != nil ? "enrolled" : m.pendingTokenExpiresAt != nil ? "pending" : "local"
                print(
                    "\(m.name.padding(toLength: 16, withPad: " ", startingAt: 0))  \(state.padding(toLength: 10, withPad: " ", startingAt: 0))  \(String(m.recoveryPoints).leftPad(6))  \(m.lastPointAt?.formatted(.iso8601) ?? "-")"
                )
            }
        }
    }

    struct RemoveMachine: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove-machine",
            abstract: "Stop protecting a machine: its credential stops working; its recovery points are kept until retention removes them."
        )
        @OptionGroup var relay: RelayOptions
        @Argument(help: "The machine's name.") var name: String

        func run() async throws {
            try relay.directory.requireRelay()
            let store = try Store.open(at: relay.directory.storePath, purpose: "`outpost relay remove-machine`")
            try MachineCatalog(store: store).removeMachine(name)
            printErr("machine \(name) removed; its recovery points are kept")
        }
    }

    struct Fingerprint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the SHA-256 fingerprint of the relay's certificate alone on stdout.")
        @OptionGroup var relay: RelayOptions
        @Option(help: "Settings file (default: DATA/relay.toml).") var config: String?

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            print(try dir.identity(dir.configuration(file: config)).fingerprint)
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify the relay's store (as `outpost check`); exits 13 on damage.",
            discussion: """
                With --repair (which reads every blob, as --read-data does), every damaged or missing blob is fetched back from the vault (the relay must be registered: `outpost relay register`), verified against its id and stored in a new pack; a pack that held damaged blobs is moved to STORE/quarantine/ (kept, never deleted) once its intact blobs were copied out and the index names the copies. It runs while `relay serve` serves. Exit 0: no damage, or all of it repaired; 13: damage remains (what the vault could not give is listed); 64: --repair on a relay with no vault; 12: a gc is running; 20: the vault cannot be reached.
                """
        )
        @OptionGroup var relay: RelayOptions
        @Flag(help: "Also read, decompress and re-hash every chunk.") var readData = false
        @Flag(help: "Fetch every damaged or missing blob back from the vault and quarantine the damaged packs (implies --read-data).")
        var repair = false
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try relay.directory.requireRelay()
            try await asRelayJob(.check, relay.directory) {
                if !repair && !json {
                    try checkStore(at: relay.directory.storePath, readData: readData)
                    return
                }
                try await checkAndRepair()
            }
        }
    }
}

struct EnrollCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll",
        abstract: "Enroll this machine with a relay: pins its certificate and stores the machine's credential."
    )
    @Option(help: "The relay's address, https://HOST:PORT.") var relay: String
    @Option(
        help:
            "The one-time token from `outpost relay add-machine` (visible to other local users in the process list while enroll runs: prefer --token-file)."
    )
    var token: String?
    @Option(help: ArgumentHelp("A file holding the one-time token (`-` reads it from standard input).", valueName: "file"))
    var tokenFile: String?
    @Option(help: "The relay certificate's SHA-256 fingerprint (from `outpost relay fingerprint`); without it the first certificate seen is trusted.")
    var fingerprint: String?
    @Option(help: "Where to write the client configuration (default: ~/.config/outpost/client.toml).") var config: String?

    func validate() throws {
        if (token == nil) == (tokenFile == nil) {
            throw ValidationError("give the enrollment token with exactly one of --token-file FILE or --token TOKEN")
        }
    }

    /// The token, from the command line or a file (trimmed: a token file usually ends with a newline).
    func readToken() throws -> String {
        if let token { return token }
        let file = tokenFile!
        let text: String?
        if file == "-" {
            printErr("reading the enrollment token from standard input")
            text = String(data: FileHandle.standardInput.readDataToEndOfFile(), encoding: .utf8)
        } else {
            // Read to the end, not `st_size` bytes: `--token-file <(…)` and FIFOs have no size (the demo passes
            // its token that way, and got "empty").
            text = FileHandle(forReadingAtPath: file).flatMap { h in
                defer { try? h.close() }
                return String(data: h.readDataToEndOfFile(), encoding: .utf8)
            }
        }
        guard let t = text?.trimmingCharacters(in: .whitespacesAndNewlines), !t.isEmpty else {
            throw OutpostError(
                .usage,
                "cannot read an enrollment token from \(file == "-" ? "standard input" : file): it is missing, unreadable or empty; write the token from `outpost relay add-machine` into it"
            )
        }
        return t
    }

    func run() async throws {
        let path = config ?? ClientConfiguration.defaultPath
        let token = try readToken()
        try ClientConfiguration.prepareDirectory(for: path)
        let (cfg, fp) = try await Enrollment.enroll(
            relay: relay, token: token, expectedFingerprint: fingerprint, logger: Logger(label: "outpost.enroll"),
            notify: { printErr($0) })
        try cfg.save(path: path)
        if let fp, fingerprint == nil {
            printErr("pinned the relay certificate \(fp) on first use; compare it with `outpost relay fingerprint` on the relay")
        }
        printErr("enrolled as machine \(cfg.machine) with \(relay); configuration written to \(path) (mode 0600)")
    }
}
