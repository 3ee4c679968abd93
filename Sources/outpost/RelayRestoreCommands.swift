import ArgumentParser
import Foundation
import Logging
import OutpostArchive
import OutpostCore
import OutpostForwarder
import OutpostHTTP
import OutpostRelay
import OutpostStore
import Synchronization

extension RelayCommand {
    struct Points: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List recovery points with where each is: relay, vault (pruned from the relay) or both.",
            discussion: """
                relay: in the relay's catalog, not (yet) in the vault; both: in the catalog and forwarded; vault: \
                pruned from the relay, still in the vault (restore it with `outpost relay restore`). A relay \
                registered with no vault lists every point as relay. Runs while the relay serves. Exit 14: an \
                unknown machine.
                """
        )
        @OptionGroup var relay: RelayOptions
        @Option(help: "Only this machine's recovery points (default: every machine's).") var machine: String?
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let dir = relay.directory
            try dir.requireRelay()
            let store = try Store.open(at: dir.storePath, purpose: "`outpost relay points`")
            try printPoints(
                try tieredPoints(dir, store, machine: machine).map { (info: $0.info, tier: Optional($0.tier)) }, json: json, machine: machine)
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Restore any machine's recovery point on the relay host into a folder, from the relay's store or its vault.",
            discussion: """
                Every chunk is verified against its id before it is written. --tier auto (the default) reads what \
                the relay's store holds intact from it and fetches the rest from the vault, so a point pruned from \
                the relay (tier vault in `outpost relay points`) costs WAN traffic only for what the relay lacks; \
                relay never asks the vault (a chunk the relay lacks fails its files); vault reads every chunk from \
                the vault (a test of the off-site copy). The summary says how many bytes came from each tier. \
                Nothing that exists in the target is touched unless --overwrite or --skip. Runs while the relay \
                serves. Exit 3: finished, but some entries could not be restored (listed); 14: an unknown machine \
                or recovery point.
                """
        )
        @OptionGroup var relay: RelayOptions
        @Option(help: "The machine the recovery point belongs to.") var machine: String
        @Option(help: "Folder to restore into (created if needed).") var target: String
        @Option(help: ArgumentHelp("Where chunks are read (auto: the relay, and the vault for what it lacks).", valueName: "tier"))
        var tier: RelayAPI.FetchTier = .auto
        @Flag(help: "Replace existing files in the target.") var overwrite = false
        @Flag(help: "Keep existing files in the target and restore the rest.") var skip = false
        @Option(help: "Files restored at once (default: 2 × cores).") var workers: Int?
        @Argument(help: "Recovery point id (a unique prefix) or `latest`.") var point: String
        @Argument(help: "Paths inside the recovery point to restore (default: everything).") var paths: [String] = []

        func validate() throws {
            if overwrite && skip { throw ValidationError("--overwrite and --skip exclude each other; choose one") }
            if let workers, !(1...256).contains(workers) { throw ValidationError("--workers must be 1 to 256") }
        }

        func run() async throws {
            try relay.directory.requireRelay()
            try await asRelayJob(.restore, relay.directory, machine: machine) { try await restore() }
        }

        private func restore() async throws {
            let dir = relay.directory
            let logger = Logger(label: "outpost.relay-restore")
            let store = try Store.open(at: dir.storePath, purpose: "`outpost relay restore`")
            let listed = try tieredPoints(dir, store, machine: machine)
            let info = try Store.resolve(point, in: listed.map(\.info), machine: machine, where: "the relay \(dir.root)")
            let where_ = listed.first { $0.info.id == info.id }?.tier ?? .relay
            if where_ == .vault && tier == .relay {
                printErr(
                    "note: recovery point \(info.id.shortHex) is only in the vault; --tier relay restores only what the relay's store still holds of it"
                )
            }
            // The vault link, unless the relay has none or the vault is not to be asked.
            var forwarder: Forwarder?
            if vaultRegistered(dir) && tier != .relay {
                forwarder = try makeForwarder(dir: dir, store: store, settings: try dir.configuration(), logger: logger)
            }
            do {
                try await restore(info, pointTier: where_, store: store, forwarder: forwarder, logger: logger)
                await forwarder?.vault.close()
            } catch {
                await forwarder?.vault.close()
                throw error
            }
        }

        func restore(_ info: RecoveryPointInfo, pointTier: RelayAPI.PointTier, store: Store, forwarder: Forwarder?, logger: Logger) async throws {
            let fetch = forwarder.map { f in { @Sendable (id: BlobID) async throws -> PreparedBlob? in try await f.fetch(id) } }
            let repository = try RelayHostRepository(store: store, tier: tier, vault: fetch, logger: logger)
            var options = RestoreOptions(target: target, include: paths, existing: overwrite ? .overwrite : skip ? .skip : .refuse)
            if let workers { options.workers = workers }
            let restorer = Restorer(repository: repository, point: info, options: options)
            let ticker = ProgressTicker { [restorer] elapsed in
                let b = restorer.progressBytes.load(ordering: .relaxed)
                return "\(formatBytes(b)) restored, \(formatBytes(Int64(elapsed > 0 ? Double(b) / elapsed : 0)))/s"
            }
            let r: RestoreResult
            do { r = try await restorer.run(); ticker.stop() } catch { ticker.stop(); throw error }
            let tiers = tierSummary(relay: repository.relayBytes.load(ordering: .relaxed), vault: repository.vaultBytes.load(ordering: .relaxed))
            print(
                "restored recovery point \(info.id.shortHex) of \(info.point.machine) (tier \(pointTier.rawValue)) into \(target): \(r.files) files (\(formatBytes(r.bytes))), \(r.directories) folders, \(r.otherEntries) other entries\(r.skipped > 0 ? ", \(r.skipped) skipped" : ""); \(tiers)"
            )
            if !r.failures.isEmpty {
                printErr("\(r.failures.count) problems:")
                for f in r.failures { printErr("  \(Terminal.escaped(f.path)): \(Terminal.escaped(f.reason))") }
                throw CommandExit(code: .partialBackup)
            }
        }
    }
}

/// Whether the relay is registered with a vault (`outpost relay register` wrote its link).
func vaultRegistered(_ dir: RelayDataDirectory) -> Bool {
    FileManager.default.fileExists(atPath: VaultLink.paths(dir.root).link)
}

/// The relay's recovery points (of one machine, or all) with where each is; an unknown machine is refused (14).
func tieredPoints(_ dir: RelayDataDirectory, _ store: Store, machine: String?) throws -> [TieredPoint] {
    if let machine, try !store.index.machines().contains(machine) {
        throw OutpostError(.notFound, "no machine named \(machine) is known to this relay; list them with `outpost relay machines`")
    }
    return try PointTiers(store: store, vault: vaultRegistered(dir)).list(machine: machine)
}
