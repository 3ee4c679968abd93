import ArgumentParser
import Foundation
import Logging
import OutpostCore
import OutpostForwarder
import OutpostRelay
import OutpostStore

extension RelayCommand {
    struct Retention: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set or show retention policies: the relay's default and each machine's.",
            discussion: """
                With values, sets them for --machine, or as the relay's default (which then wins over relay.toml's \
                [retention]); values not given keep what was set before, unless --clear. Without values, shows each \
                machine's effective policy and where each value comes from (machine, relay default, relay.toml). \
                A tier with no rule keeps everything. Exit 64: a value out of its range; 14: an unknown machine.
                """
        )
        @OptionGroup var relay: RelayOptions
        @Option(help: "The machine to set or show (default: the relay's default, and every machine when showing).") var machine: String?
        @OptionGroup var retention: RetentionValues
        @Flag(help: "Remove the values set before at this level (the machine's, or the relay's default), then set those given.") var clear = false
        @Flag(help: "Print JSON.") var json = false

        var values: RetentionPolicy { retention.policy }

        struct Output: Encodable {
            var relay: EffectiveRetention
            var machines: [EffectiveRetention]
        }

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let file = try dir.configuration().retention
            // Checked before the store is opened: the same message as relay.toml's, with the options' names.
            try values.validate()
            let store = try Store.open(at: dir.storePath, purpose: "`outpost relay retention`")
            let settings = RetentionSettings(store: store)
            if !values.isEmpty || clear {
                try settings.set(values, machine: machine, clear: clear, file: file)
                printErr(
                    "retention policy \(clear ? "cleared and " : "")set for \(machine.map { "machine \($0)" } ?? "the relay (the default of every machine)"); `outpost relay prune --data \(dir.root) --dry-run` shows what it removes"
                )
            }
            let all = try settings.effectiveForAll(file: file)
            var shown = all.machines
            if let machine {
                shown = all.machines.filter { $0.machine == machine }
                if shown.isEmpty {
                    throw OutpostError(.notFound, "no machine named \(machine) is known to this relay; list them with `outpost relay machines`")
                }
            }
            if json { try printJSON(Output(relay: all.relay, machines: shown)); return }
            print("relay default: \(describe(all.relay))")
            for m in shown { print("machine \(m.machine ?? "?"): \(describe(m))") }
        }
    }

    struct Prune: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply the relay tier of the retention policies now: list what leaves the relay and why, and remove it.",
            discussion: """
                A point leaves the relay when no relay rule keeps it, it is not kept by backup --keep-until, and it is \
                not its machine's newest; when the relay is registered with a vault, only once it is forwarded (unless \
                --force). Its data goes at a later `outpost relay gc` (or `outpost store gc`), which runs while the \
                relay serves; `relay serve` runs one after its daily prune. gc keeps what was relied on within its \
                grace (24 h), so the data of points pruned now is freed by a gc at least 24 h later: --gc runs one \
                right after the prune for what earlier prunes left. With a vault, the vault tier is then applied in the \
                vault: the entries of points it lets go (`vault: expires`) are deleted there, then every vault pack no \
                remaining point needs, and packs mostly unused are rewritten (soft delete: the vault keeps what it \
                deletes for its soft-delete period; an immutable vault refuses, exit 15). --dry-run shows what the vault \
                would free. Without --dry-run or --machine, the history older than [jobs] keep_days (jobs ended and \
                alerts cleared before; not a machine's newest good backup, an open alert or a held point's job) is \
                deleted too, as `relay serve` does every hour.
                """
        )
        @OptionGroup var relay: RelayOptions
        @Option(help: "Only this machine.") var machine: String?
        @Flag(help: "Show what would be removed; remove nothing.") var dryRun = false
        @Flag(help: "Print JSON.") var json = false
        @Flag(help: "Also remove points the vault does not have yet (they are then lost for good once gc runs).") var force = false
        @Flag(
            help:
                "Then run gc (as `outpost relay gc`, while the relay serves): it frees what earlier prunes left; the data of points pruned now waits for a gc at least 24 h later."
        )
        var gc = false

        func validate() throws {
            if gc && dryRun {
                throw ValidationError(
                    "--gc removes data and --dry-run removes nothing: give one of them (`outpost relay gc --dry-run` shows what gc would free)")
            }
        }

        struct Output: Encodable {
            var dryRun: Bool
            var plan: PrunePlan
            var reclaimable: ReclaimableSpace
            var gc: String
            /// What the gc after the prune did (with --gc).
            var gcReport: GCReport?
            /// What the vault tier did (or would do) in the vault; nil without a vault.
            var vault: VaultRetention.Report?
            /// The jobs and alerts older than [jobs] keep_days deleted; nil with --dry-run or --machine.
            var history: HistoryRetention.Report?
        }

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let settings = try dir.configuration()
            let store = try Store.open(at: dir.storePath, purpose: "`outpost relay prune`")
            let pruner = RelayPruner(store: store, file: settings.retention)
            var plan = try pruner.plan(machine: machine, forwarding: try forwardingStates(dir, store), force: force)
            let jobs = JobLog(store: store)
            let job = dryRun ? nil : try? jobs.start(.prune)
            if !dryRun { plan = try pruner.apply(plan) }
            var vaultReport: VaultRetention.Report?
            // A vault that refuses or cannot be reached leaves the relay tier applied: reported, then the error.
            var vaultError: (any Error)?
            if plan.vaultRegistered {
                var logger = Logger(label: "outpost.relay")
                logger.logLevel = .warning
                let forwarder = try makeForwarder(dir: dir, store: store, settings: settings, logger: logger)
                do {
                    vaultReport = try await applyVaultTier(&plan, forwarder: forwarder, store: store, dryRun: dryRun)
                } catch {
                    vaultError = error
                    plan.vaultTier = "not applied: \(error)"
                }
                await forwarder.vault.close()
            }
            defer {
                if let vaultError { printErr("the relay tier was applied; the vault tier was not (run `outpost relay prune` again): \(vaultError)") }
            }
            // The history older than [jobs] keep_days, as `relay serve` deletes it every hour.
            let history = dryRun || machine != nil ? nil : try HistoryRetention(store: store).apply(keepDays: settings.jobs.keepDays, now: Date())
            if let job {
                try? jobs.finish(
                    job, vaultError == nil ? .completed : .completedWithWarnings,
                    detail: "\(plan.count(relay: "leaves")) points left the relay; vault: \(plan.vaultTier)")
            }
            let leaving = Set(plan.leaving.compactMap { BlobID(hex: $0.point.id) })
            let space = try ReclaimableSpace.estimate(store: store, without: dryRun ? leaving : [])
            let note =
                space.blobs == 0
                ? "nothing to reclaim"
                : "about \(formatBytes(space.bytes)) (\(space.blobs) blobs) to reclaim by `outpost relay gc --data \(dir.root)` (runs while the relay serves); gc keeps what was relied on within its grace, so the data of points pruned now is freed only by a gc at least 24 h after the prune"
            let report = gc ? try GarbageCollector(store: store, treeRoots: try PrunedPoints(store: store).roots()).run() : nil
            if json {
                try printJSON(
                    Output(dryRun: dryRun, plan: plan, reclaimable: space, gc: note, gcReport: report, vault: vaultReport, history: history))
                if let vaultError { throw vaultError }
                return
            }
            if !plan.vaultRegistered { print("no vault: this relay forwards nowhere, so it prunes by the relay rules alone") }
            for m in plan.machines {
                print("machine \(m.machine): \(describe(m.policy))")
                for p in m.points { print("  " + line(p)) }
            }
            let left = plan.count(relay: "leaves"), stay = plan.count(relay: "stays"), waiting = plan.waitingForForwarding
            print(
                "relay: \(left) recovery points \(dryRun ? "would leave" : "left"), \(stay) stay\(waiting > 0 ? " (\(waiting) only until they are forwarded)" : "")\(dryRun ? "; dry run: nothing was removed" : "")"
            )
            if plan.vaultRegistered { print("vault: " + plan.vaultTier) }
            print("space: \(note)")
            if let h = history {
                print("history: \(h.jobs) jobs and \(h.alerts) alerts older than [jobs] keep_days \(h.keepDays) deleted")
            }
            if let r = report {
                print(
                    "gc: removed \(r.deadBlobs) unused blobs, \(r.packsDeleted) packs deleted, \(r.packsRepacked) rewritten; \(formatBytes(r.bytesFreed)) freed"
                )
                if r.forgottenPointsKept > 0 {
                    print(
                        "gc: \(r.forgottenPointsKept) recovery points pruned or forgotten within the last 24 h keep their data until a gc at least 24 h after they went"
                    )
                }
            }
            if let vaultError { throw vaultError }
        }

        func line(_ p: PrunePlan.PointPrune) -> String {
            let time = p.finishedAt.formatted(
                .iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: false).timeSeparator(.colon))
            let relay = "\(p.relay.action)\(p.relay.reasons.isEmpty ? "" : ": " + p.relay.reasons.joined(separator: ", "))"
            let vault = "vault: \(p.vault.action)\(p.vault.reasons.isEmpty ? "" : ": " + p.vault.reasons.joined(separator: ", "))"
            return "\(p.id.prefix(8))  \(time)  \(relay)  |  \(vault)"
        }
    }
}

/// Applies the vault tier of an applied (or, with `dryRun`, planned) prune in the vault: `VaultRetention` over
/// the plan's expiring points, with the points pruned from the relay that the vault keeps. Sets the plan's
/// `vaultApplied` and `vaultTier` line.
func applyVaultTier(_ plan: inout PrunePlan, forwarder: Forwarder, store: Store, dryRun: Bool) async throws -> VaultRetention.Report {
    let pruned = PrunedPoints(store: store)
    let expiring = plan.expiring.map(\.id)
    let report = try await VaultRetention(forwarder: forwarder).run(
        expiring: expiring, vaultOnly: try pruned.list().map(\.info), dryRun: dryRun, forget: { try pruned.remove($0) })
    if !dryRun { try MachineCatalog(store: store).forgetUnheld() }
    plan.vaultApplied = !dryRun
    plan.vaultTier =
        "\(report.pointsExpired) recovery points \(dryRun ? "would expire" : "expired"); \(report.packsDeleted) packs \(dryRun ? "would be deleted" : "deleted"), \(report.packsRewritten) \(dryRun ? "would be rewritten" : "rewritten"); \(formatBytes(report.bytesFreed)) \(dryRun ? "would be freed" : "freed") in the vault (kept in its trash for its soft-delete period), \(formatBytes(report.vaultBytes)) held, \(formatBytes(report.bytesLeft)) unused in packs not worth rewriting"
        + (report.notes.isEmpty ? "" : "; " + report.notes.joined(separator: "; "))
    return report
}

/// The retention values `relay retention` and `relay group create|edit` take, with MARS's ranges in the help.
struct RetentionValues: ParsableArguments {
    @Option(help: "Keep points on the relay younger than N days (1 to 9999).") var relayDays: Int?
    @Option(help: "Keep the newest N points on the relay (1 to 9999).") var relayLast: Int?
    @Option(help: "Vault: keep the newest point of each of the last N days (7 to 9999).") var vaultDaily: Int?
    @Option(help: "Vault: keep the newest point of each of the last N weeks (4 to 5163).") var vaultWeekly: Int?
    @Option(help: "Vault: keep the newest point of each of the last N months (3 to 1188).") var vaultMonthly: Int?
    @Option(help: "Vault: keep the newest point of each of the last N years (1 to 99).") var vaultYearly: Int?

    var policy: RetentionPolicy {
        RetentionPolicy(
            relayDays: relayDays, relayLast: relayLast, vaultDaily: vaultDaily, vaultWeekly: vaultWeekly, vaultMonthly: vaultMonthly,
            vaultYearly: vaultYearly)
    }
}

/// Each recovery point's forwarding state (hex id → pending, forwarding, forwarded, failed), or nil when the
/// relay is not registered with a vault (then the relay rules alone decide).
func forwardingStates(_ dir: RelayDataDirectory, _ store: Store) throws -> [BlobID: String]? {
    guard FileManager.default.fileExists(atPath: VaultLink.paths(dir.root).link) else { return nil }
    var out: [BlobID: String] = [:]
    for e in try ForwardingLedger(store: store).entries() {
        if let id = BlobID(hex: e.point) { out[id] = e.state.rawValue }
    }
    return out
}

/// "relay_days 14 (relay.toml), relay_last -; vault_daily 30 (machine), …": each value and where it comes from.
func describe(_ e: EffectiveRetention) -> String {
    func value(_ s: RetentionPolicy.Setting) -> String { e.policy[s].map { "\(s.key) \($0) (\(e.source(s).rawValue))" } ?? "\(s.key) -" }
    let relay =
        e.policy.hasRelayRule ? [RetentionPolicy.Setting.relayDays, .relayLast].map(value).joined(separator: ", ") : "relay: no rule, keeps all"
    let vault =
        e.policy.hasVaultRule
        ? [RetentionPolicy.Setting.vaultDaily, .vaultWeekly, .vaultMonthly, .vaultYearly].map(value).joined(separator: ", ")
        : "vault: no rule, keeps all"
    return relay + "; " + vault
}
