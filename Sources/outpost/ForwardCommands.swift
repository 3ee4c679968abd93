import ArgumentParser
import Foundation
import Logging
import OutpostCore
import OutpostCrypto
import OutpostForwarder
import OutpostHTTP
import OutpostRelay
import OutpostStore
import OutpostVault
import Synchronization

/// Reads a passphrase from a file (first line, without the line break).
func readPassphrase(_ path: String) throws -> String {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw ValidationError("cannot read the passphrase file \(path)")
    }
    return String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
}

extension RelayCommand {
    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register the relay with a vault (credentials file) and set the encryption passphrase.",
            discussion:
                "The passphrase (at least 16 printable ASCII characters) derives the key that protects everything sent to the vault. It is not stored on the relay. A lost passphrase means the off-site copies cannot be read by anyone: keep it safe."
        )
        @OptionGroup var relay: RelayOptions
        @Option(help: "The vault credentials file from `outpost vault credentials`.") var vaultCredentials: String
        @Option(help: "A file whose first line is the passphrase.") var passphraseFile: String?
        @Flag(help: "Generate a strong passphrase and write it to --passphrase-file (mode 0600).") var generatePassphrase = false
        @Option(help: "This relay's name in the vault (default: the host name).") var name: String?
        @Flag(help: .hidden) var fastKdfForTests = false

        func validate() throws {
            if passphraseFile == nil {
                throw ValidationError("give --passphrase-file FILE (with --generate-passphrase, where to write the new passphrase)")
            }
            if let name, let problem = RelayName.problem(name) { throw ValidationError(problem) }
        }

        func run() async throws {
            try relay.directory.requireRelay()
            // Checked before a credentials file is spent: the vault refuses the same names.
            let relayName = name ?? ProcessInfo.processInfo.hostName
            if name == nil, RelayName.problem(relayName) != nil {
                throw VaultError(
                    .invalid, "this host's name \(RelayName.quoted(relayName)) cannot be a relay name (\(RelayName.rule)); give one with --name")
            }
            let file = passphraseFile!
            let passphrase: String
            if generatePassphrase {
                if FileManager.default.fileExists(atPath: file) {
                    throw ValidationError("\(file) exists; --generate-passphrase will not overwrite a passphrase")
                }
                passphrase = PassphrasePolicy.generate()
                try DurableFile.writeSecret(Array((passphrase + "\n").utf8), to: file)
                printErr(
                    "generated a passphrase in \(file) (mode 0600). Store a copy somewhere safe, away from this relay: without it the off-site copies cannot be read."
                )
            } else {
                passphrase = try readPassphrase(file)
            }
            let link = try await Registration.register(
                data: relay.directory.root, credentialsPath: vaultCredentials, passphrase: passphrase,
                relayName: relayName, proxy: try relay.directory.configuration().proxy,
                scrypt: fastKdfForTests ? .fastForTests : .standard, logger: Logger(label: "outpost.register"))
            printErr(
                "registered with vault \(link.vaultName) (\(link.url)) as relay \(link.relayID); recovery points will be forwarded encrypted (restart `outpost relay serve` to start its forwarder; `outpost relay forward --now` forwards at once)"
            )
        }
    }

    struct ChangePassphrase: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "change-passphrase", abstract: "Re-wrap the master key under a new passphrase (nothing is re-uploaded).")
        @OptionGroup var relay: RelayOptions
        @Option(help: "File with the current passphrase.") var oldPassphraseFile: String
        @Option(help: "File with the new passphrase.") var newPassphraseFile: String

        func run() async throws {
            let kept = try await Registration.changePassphrase(
                data: relay.directory.root, old: try readPassphrase(oldPassphraseFile),
                new: try readPassphrase(newPassphraseFile), proxy: try relay.directory.configuration().proxy,
                logger: Logger(label: "outpost.register"))
            if kept.isEmpty {
                printErr("passphrase changed; the vault holds the newly wrapped key, and the old passphrase no longer opens it")
            } else {
                printErr("passphrase changed; the vault holds the newly wrapped key")
                printErr(
                    "warning: older key files stay in the vault (\(kept.joined(separator: ", "))), so the OLD passphrase still opens the vault copy too. An immutable vault never deletes them; otherwise run `outpost relay change-passphrase` again with the new passphrase as both old and new once the vault answers"
                )
            }
        }
    }

    struct Forward: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Forward pending recovery points to the vault now, in the foreground.")
        @OptionGroup var relay: RelayOptions
        @Flag(help: "Run now (the only mode of this command; `relay serve` forwards on its own).") var now = false
        @Option(help: "Limit the upload rate, in Kbit/s (512 to 1023000).") var limitKbps: Int?

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            try await withForwarder(dir, purpose: "`outpost relay forward`", overrideKbps: limitKbps, logger: Logger(label: "outpost.forwarder")) {
                forwarder in
                let ticker = ProgressTicker { [forwarder] elapsed in
                    let b = forwarder.sentBytes.load(ordering: .relaxed)
                    return "\(formatBytes(b)) sent to the vault, \(formatBytes(Int64(elapsed > 0 ? Double(b) / elapsed : 0)))/s"
                }
                func forwardAll() async throws -> Forwarder.Report {
                    defer { ticker.stop() }
                    return try await forwarder.run()
                }
                let started = Date()
                let r = try await forwardAll()
                let secs = Date().timeIntervalSince(started)
                // The fleet view's record, as `relay serve` sends after its runs (best effort: a warning when it fails).
                await sendStatus(forwarder, settings: try dir.configuration())
                print(
                    "forwarded \(r.points) recovery points: \(r.blobs) blobs, \(formatBytes(r.bytes)) in \(String(format: "%.1f", secs)) s (\(formatBytes(Int64(Double(r.bytes) / max(secs, 0.001))))/s); backlog \(r.backlog)"
                )
            }
        }
    }

    struct VerifyVault: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify-vault", abstract: "Read back and authenticate everything forwarded to the vault; exits 13 on damage.",
            discussion:
                "With --repair, every damaged or missing blob the relay still holds intact is sent again in new packs, and damaged recovery-point entries are put back; the command then exits 0 when nothing is left unmended."
        )
        @OptionGroup var relay: RelayOptions
        @Flag(help: "Send again what is damaged or missing in the vault, from the relay's own copy.") var repair = false

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            try await asRelayJob(.verify, dir) { try await verifyVault(dir) }
        }

        private func verifyVault(_ dir: RelayDataDirectory) async throws {
            try await withForwarder(dir, purpose: "`outpost relay verify-vault`", logger: Logger(label: "outpost.forwarder")) { forwarder in
                let found = try await forwarder.verify()
                for d in found.damage { print("damaged: \(d)") }
                if found.damage.isEmpty {
                    printErr("vault copy intact: \(found.checked) objects read back and authenticated")
                    return
                }
                printErr("DAMAGE FOUND in the vault: \(found.damage.count) problems in \(found.checked) objects")
                guard repair else {
                    printErr("run `outpost relay verify-vault --data \(dir.root) --repair` to send the damaged parts again from the relay")
                    throw CommandExit(code: .damageFound)
                }
                let fixed = try await forwarder.repair(found)
                printErr("repair: \(fixed.resent) blobs (\(formatBytes(fixed.bytes))) sent again in new packs")
                let after = try await forwarder.verify()
                for u in fixed.unrepairable { print("unrepairable: \(u)") }
                // What a repair could not mend stays damaged; the damaged packs themselves stay, unreferenced.
                if !fixed.unrepairable.isEmpty || !after.damagedBlobs.isEmpty || !after.damagedPoints.isEmpty {
                    printErr(
                        "problems remain after the repair: \(Set(after.damagedBlobs).count + Set(after.damagedPoints).count) damaged objects in the vault, \(fixed.unrepairable.count) that the relay could not mend (listed above)"
                    )
                    throw CommandExit(code: .damageFound)
                }
                printErr("repaired: the vault copy now reads back intact (\(after.checked) objects checked)")
            }
        }
    }

    struct Forwarding: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show each recovery point's forwarding state, and the space the relay's data takes in the vault.",
            discussion:
                "Space: what the vault holds for this relay as the relay's ledger records it. With --space, also what no recovery point the vault keeps needs any more (it walks every point's trees, as the vault's retention does): the retention frees it at the next prune (`outpost relay prune`, or the daily prune of `relay serve`), except what sits in packs not worth rewriting."
        )
        @OptionGroup var relay: RelayOptions
        @Flag(help: "Print JSON: the points' states (an array); with --space, the vault's space instead.") var json = false
        @Flag(help: "Also work out what the vault holds that no point needs (walks every point's trees).") var space = false

        func run() async throws {
            let dir = relay.directory
            let store = try Store.open(at: dir.storePath, purpose: "`outpost relay forwarding`")
            let ledger = ForwardingLedger(store: store)
            let entries = try ledger.entries()
            if json && !space { try printJSON(entries); return }
            let registered = FileManager.default.fileExists(atPath: VaultLink.paths(dir.root).link)
            if space {
                guard registered else {
                    throw OutpostError(.notRegistered, "\(dir.root) is not registered with a vault: there is no vault space to show")
                }
                var logger = Logger(label: "outpost.relay")
                logger.logLevel = .warning
                let s = try await withForwarder(dir, purpose: "`outpost relay forwarding --space`", logger: logger) { forwarder in
                    try await VaultRetention(forwarder: forwarder).run(
                        expiring: [], vaultOnly: try PrunedPoints(store: forwarder.store).list().map(\.info), dryRun: true, forget: { _ in })
                }
                if json { try printJSON(s); return }
                printEntries(entries)
                print(
                    "vault: \(s.packs) packs, \(formatBytes(s.vaultBytes + s.bytesFreed)) held; \(formatBytes(s.bytesFreed + s.bytesLeft)) no longer needed (\(formatBytes(s.bytesFreed)) freed by the next prune, \(formatBytes(s.bytesLeft)) in packs not worth rewriting)"
                )
                return
            }
            printEntries(entries)
            if registered {
                // From the ledger alone: no tree is read and the vault is not asked.
                let packs = try ledger.packs()
                print(
                    "vault: \(packs.count) packs, \(formatBytes(Int64(packs.reduce(0) { $0 + ($1.size ?? $1.estimatedSize) }))) held (`--space` also says how much no point needs)"
                )
            }
        }

        func printEntries(_ entries: [ForwardingLedger.Entry]) {
            for e in entries {
                print(
                    "\(e.point.prefix(8))  \(e.machine.padding(toLength: 14, withPad: " ", startingAt: 0))  \(e.state.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0))  \(formatBytes(e.bytes))\(e.reason.map { "  \($0)" } ?? "")"
                )
            }
        }
    }
}

/// Opens the relay's store, builds its forwarder, runs `body` with it, and closes the connection to the vault
/// whatever `body` does.
func withForwarder<T>(
    _ dir: RelayDataDirectory, purpose: String, overrideKbps: Int? = nil, logger: Logger,
    _ body: (Forwarder) async throws -> T
) async throws -> T {
    let store = try Store.open(at: dir.storePath, purpose: purpose)
    let forwarder = try makeForwarder(dir: dir, store: store, settings: try dir.configuration(), overrideKbps: overrideKbps, logger: logger)
    do {
        let result = try await body(forwarder)
        await forwarder.vault.close()
        return result
    } catch {
        await forwarder.vault.close()
        throw error
    }
}

/// Sends the vault the relay's status record (its fleet view, docs/vault.md §20); logged, never thrown.
func sendStatus(_ forwarder: Forwarder, settings: RelayConfiguration) async {
    let reporter = RelayStatusReporter(store: forwarder.store, settings: settings.alerts, clock: .fromEnvironment())
    await forwarder.sendStatus { backlog, lag in try reporter.record(backlog: backlog, vaultLagSeconds: lag) }
}

/// Builds the forwarder from the relay's registration, keys and settings.
func makeForwarder(dir: RelayDataDirectory, store: Store, settings: RelayConfiguration, overrideKbps: Int? = nil, logger: Logger) throws -> Forwarder
{
    let link = try VaultLink.load(data: dir.root)
    let master = try Registration.loadMaster(data: dir.root)
    let vault = try VaultClient(url: link.url, certificatePEM: link.certificate, credential: link.credential, proxy: settings.proxy, logger: logger)
    var schedule = settings.throttle
    if let k = overrideKbps {
        let rate = k * 1000 / 8
        guard rate >= ThrottleSchedule.minimumRate, rate <= ThrottleSchedule.maximumRate else {
            throw ValidationError("--limit-kbps must be between 512 Kbit/s and 1023 Mbit/s")
        }
        schedule = ThrottleSchedule(workRate: rate, otherRate: rate)
    }
    let throttle = schedule.workRate == nil && schedule.otherRate == nil ? nil : Throttle(schedule: schedule)
    return Forwarder(store: store, data: dir.root, vault: vault, master: master, throttle: throttle, logger: logger)
}

extension RelayCommand {
    struct Rebuild: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rebuild a lost relay from the vault into a new data directory, with a recovery credentials file and the passphrase.",
            discussion: """
                On the vault: `outpost vault credentials --data DIR --out FILE --recover RELAY`. Protected machines then enroll \
                with the new relay under their old names to see their recovery points again.

                The catalog comes first (each point's record and trees, who owns what, where every chunk is in the vault): \
                once "catalog rebuilt" is printed, `outpost relay serve` can run beside the rebuild and restores work, \
                fetching chunks from the vault as they need them, while the rebuild goes on reading every vault pack \
                (rehydration). --catalog-only stops after the catalog; a later `relay rebuild` (no new recovery file \
                needed) rehydrates what is still missing.
                """
        )
        @OptionGroup var relay: RelayOptions
        @Option(help: "A recovery credentials file (`outpost vault credentials --recover RELAY`).") var vaultCredentials: String
        @Option(help: "A file whose first line is the passphrase set at registration.") var passphraseFile: String
        @Flag(help: "Bring back the catalog only; chunks come from the vault when restores need them, until a later run rehydrates.")
        var catalogOnly = false

        func run() async throws {
            let dir = relay.directory
            let logger = Logger(label: "outpost.rebuild")
            let paths = VaultLink.paths(dir.root)
            let resuming = FileManager.default.fileExists(atPath: paths.link) && FileManager.default.fileExists(atPath: paths.masterKey)
            var passphrase = ""
            if !resuming {
                passphrase = try readPassphrase(passphraseFile)
            }
            if !FileManager.default.fileExists(atPath: paths.link) {
                // The passphrase is checked against the vault's key file before anything is written here or
                // registered there: re-attaching replaces the lost relay's credential, so a wrong passphrase must
                // leave it (and a relay that still runs under it) untouched. (With a link already written, an
                // earlier run re-attached: `register` finishes that without the recovery file.)
                try await Registration.checkRecoveryPassphrase(
                    credentialsPath: vaultCredentials, passphrase: passphrase,
                    proxy: try dir.configuration().proxy, logger: logger)
            }
            if !FileManager.default.fileExists(atPath: dir.storePath + "/config") {
                let fp = try dir.initialize(hosts: ["localhost", ProcessInfo.processInfo.hostName])
                printErr("created relay in \(dir.root); certificate fingerprint \(fp)")
            }
            if resuming {
                // An earlier run re-attached already: go on without spending another recovery file.
                printErr("resuming the rebuild with the registration in \(paths.dir)")
            } else {
                let link = try await Registration.register(
                    data: dir.root, credentialsPath: vaultCredentials, passphrase: passphrase,
                    relayName: ProcessInfo.processInfo.hostName, proxy: try dir.configuration().proxy, logger: logger)
                printErr("re-attached to vault \(link.vaultName) as relay \(link.relayID); the passphrase opened the master key")
            }
            let (r, seconds) = try await withForwarder(dir, purpose: "`outpost relay rebuild`", logger: logger) { forwarder in
                let machines = MachineCatalog(store: forwarder.store)
                let rebuilder = Rebuilder(
                    forwarder: forwarder,
                    ownership: { machine, blobs, trees in
                        try machines.addOwned(byMachineNamed: machine, blobs, verifiedTrees: trees)
                    }, logger: logger)
                let started = Date()
                let catalogOnly = self.catalogOnly
                let report = try await rebuilder.run(catalogOnly: catalogOnly) { c in
                    // Written at once (not buffered): a script waits for this line to start `relay serve`.
                    let line =
                        "catalog rebuilt: \(c.points) recovery points in \(String(format: "%.1f", Date().timeIntervalSince(started))) s; restores work now (with `outpost relay serve`), fetching from the vault what is not here yet\(catalogOnly ? "" : "; rehydrating")\n"
                    FileHandle.standardOutput.write(Data(line.utf8))
                }
                let ended = Date()
                // The rebuild as a job of the rebuilt relay (relay jobs).
                try? JobLog(store: forwarder.store).record(
                    .rebuild, machine: nil, state: .completed, startedAt: started, endedAt: ended, bytes: report.bytes, files: report.blobs,
                    detail: "\(report.points) recovery points rebuilt, \(report.rehydrated) rehydrated, \(report.waiting) waiting for their chunks")
                return (report, ended.timeIntervalSince(started))
            }
            print(
                "rebuilt \(r.points) recovery points from the vault: \(r.blobs) blobs, \(formatBytes(r.bytes)) in \(String(format: "%.1f", seconds)) s"
                    + (r.rehydrated > 0 ? "; \(r.rehydrated) points rehydrated" : "")
                    + (r.waiting > 0 ? "; \(r.waiting) points wait for their chunks (run `outpost relay rebuild` again to rehydrate)" : "")
            )
            printErr(
                "next: `outpost relay add-machine --data \(dir.root) NAME` for each protected machine (same names), then `outpost enroll` on each")
        }
    }
}
