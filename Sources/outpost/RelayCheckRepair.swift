import Foundation
import Logging
import OutpostCore
import OutpostForwarder
import OutpostRelay
import OutpostStore

/// `relay check --json` and `relay check --repair` (docs/vault.md §13.1).
extension RelayCommand.Check {
    struct Output: Encodable {
        var clean: Bool
        var damage: [String]
        var notes: [String]
        var affectedPoints: [String]
        var packs: Int, blobs: Int, points: Int, trees: Int
        var bytesRead: Int64
        /// With --repair: what it did, and the damage the check after it still found.
        var repair: StoreRepairReport?
        var remainingDamage: [String]?
    }

    func checkAndRepair() async throws {
        let dir = relay.directory
        if repair && !FileManager.default.fileExists(atPath: VaultLink.paths(dir.root).link) {
            throw OutpostError(
                .notRegistered,
                "the relay \(dir.root) is not registered with a vault, and --repair fetches damaged blobs back from it: run `outpost relay register --data \(dir.root) --vault-credentials FILE --passphrase-file FILE` (then forward), or check without --repair"
            )
        }
        let store = try Store.open(at: dir.storePath, purpose: "`outpost relay check`")
        let found = try StoreChecker(store: store, readData: readData || repair).run()
        var outcome: (repair: StoreRepairReport, after: CheckReport)?
        if repair {
            let logger = Logger(label: "outpost.repair")
            let forwarder = try makeForwarder(dir: dir, store: store, settings: try dir.configuration(), logger: logger)
            do {
                outcome = try await forwarder.repairStore(found)
                await forwarder.vault.close()
            } catch {
                await forwarder.vault.close()
                throw error
            }
        }
        let clean = outcome.map { $0.after.isClean && $0.repair.unrepairable.isEmpty } ?? found.isClean
        if json {
            try printJSON(
                Output(
                    clean: clean, damage: found.damage, notes: found.notes, affectedPoints: found.affectedPoints, packs: found.packs,
                    blobs: found.blobs, points: found.points, trees: found.trees, bytesRead: found.bytesRead, repair: outcome?.repair,
                    remainingDamage: outcome?.after.damage))
        } else {
            for n in found.notes { printErr("note: \(n)") }
            for d in found.damage { print("damaged: \(d)") }
            if let outcome { printRepair(outcome.repair, after: outcome.after, store: store) }
            printVerdict(found, outcome, clean: clean)
        }
        if !clean { throw CommandExit(code: .damageFound) }
    }

    private func printRepair(_ r: StoreRepairReport, after: CheckReport, store: Store) {
        for name in r.finishedQuarantines {
            print("finished: pack \(name), quarantined by an interrupted repair, is out of \(store.layout.packsRoot)")
        }
        for p in r.packs {
            let fetched = "\(p.fetched) blobs fetched from the vault"
            if p.keptInPlace {
                print("kept: pack \(p.pack) stays in place, holding blobs that could not be repaired (listed below); \(fetched) into new packs")
            } else if let at = p.quarantinedAt {
                print("repaired: pack \(p.pack): \(fetched), \(p.copied) intact blobs copied into new packs; quarantined as \(at)")
            } else {
                print("repaired: pack \(p.pack) (its file is missing): \(fetched) into new packs")
            }
        }
        if r.missingFetched > 0 { print("repaired: \(r.missingFetched) missing blobs fetched from the vault") }
        for u in r.unrepairable {
            print("unrepairable: blob \(u.blob.prefix(16))\(u.pack.map { " (pack \($0))" } ?? ""): \(u.reason)")
        }
        for d in after.damage { print("still damaged: \(d)") }
        printErr(
            "repair: \(r.blobsFetched) blobs (\(formatBytes(r.bytesFetched))) fetched from the vault, \(r.blobsCopied) intact blobs copied, \(r.packsQuarantined) packs quarantined in \(store.layout.quarantineDirectory)"
        )
    }

    private func printVerdict(_ found: CheckReport, _ outcome: (repair: StoreRepairReport, after: CheckReport)?, clean: Bool) {
        let read = readData || repair ? ", \(formatBytes(found.bytesRead)) read and verified" : ""
        guard let outcome else {
            if clean {
                printErr(
                    "no damage: \(found.packs) packs, \(found.blobs) blobs, \(found.points) recovery points, \(found.trees) trees checked\(read)")
            } else {
                printErr(
                    "DAMAGE FOUND: \(found.damage.count) problems; \(found.affectedPoints.count) recovery points cannot be fully restored (files not listed above restore normally); `--repair` fetches what the vault holds"
                )
            }
            return
        }
        let after = outcome.after
        if clean {
            printErr(
                found.isClean
                    ? "no damage: \(found.packs) packs, \(found.blobs) blobs, \(found.points) recovery points, \(found.trees) trees checked\(read)"
                    : "repaired: no damage left (\(after.packs) packs, \(after.blobs) blobs, \(after.points) recovery points checked again)")
        } else {
            printErr(
                "DAMAGE REMAINS after the repair: \(outcome.repair.unrepairable.count) blobs could not be repaired, \(after.damage.count) problems found by the check after it; \(after.affectedPoints.count) recovery points cannot be fully restored"
            )
        }
    }
}
