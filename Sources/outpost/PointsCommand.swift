import ArgumentParser
import Foundation
import OutpostArchive
import OutpostClient
import OutpostCore
import OutpostHTTP
import OutpostStore
import Synchronization

struct PointsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "points", abstract: "List recovery points.")
    @OptionGroup var target: TargetOptions
    @Option(help: "Only this machine's recovery points.") var machine: String?
    @Flag(help: "Print JSON.") var json = false

    struct Out: Encodable {
        var id: String
        var machine: String
        var hostname: String
        var paths: [String]
        var rootTree: String
        var startedAt: Date
        var finishedAt: Date
        var summary: BackupSummary
        /// Left out when the point has none (`backup --keep-until`).
        var keepUntil: Date?
        /// Where the point is (`relay`, `vault`, `both`); left out for a local store (and a relay before tiers).
        var tier: RelayAPI.PointTier?
    }

    func run() async throws {
        let points = try await withAccess(target, purpose: "`outpost points`") { try await $0.listedPoints(machine: machine) }
        try printPoints(points, json: json, machine: machine)
    }
}

/// `outpost points` and `outpost relay points`: a table (with a TIER column when tiers are known), or JSON.
func printPoints(_ points: [(info: RecoveryPointInfo, tier: RelayAPI.PointTier?)], json: Bool, machine: String?) throws {
    if json {
        try printJSON(
            points.map { (p, tier) in
                PointsCommand.Out(
                    id: p.id.hex, machine: p.point.machine, hostname: p.point.hostname, paths: p.point.paths, rootTree: p.point.rootTree,
                    startedAt: p.point.startedAt, finishedAt: p.point.finishedAt, summary: p.point.summary,
                    keepUntil: p.point.keepUntil, tier: tier)
            })
        return
    }
    if points.isEmpty { printErr("no recovery points\(machine.map { " for machine \($0)" } ?? "")"); return }
    let tiers = points.contains { $0.tier != nil }
    print("ID        TIME                  MACHINE          \(tiers ? "TIER    " : "")FILES       SIZE  KEEP UNTIL  PATHS")
    for (p, tier) in points {
        let s = p.point.summary
        let files = s.filesNew + s.filesChanged + s.filesUnchanged
        let time = p.point.finishedAt.formatted(
            .iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: false).timeSeparator(.colon))
        let where_ = tiers ? (tier?.rawValue ?? "-").padding(toLength: 6, withPad: " ", startingAt: 0) + "  " : ""
        print(
            "\(p.id.shortHex)  \(time.padding(toLength: 20, withPad: " ", startingAt: 0))  \(p.point.machine.padding(toLength: 15, withPad: " ", startingAt: 0))  \(where_)\(String(files).leftPad(6))  \(formatBytes(s.bytesTotal).leftPad(10))  \(keepUntilDay(p.point.keepUntil).padding(toLength: 10, withPad: " ", startingAt: 0))  \(p.point.paths.joined(separator: " "))"
        )
    }
}

/// The day `backup --keep-until` named (local time): the point is kept through it, until the next day starts.
func keepUntilDay(_ date: Date?) -> String {
    guard let date else { return "-" }
    let day = Calendar.current.date(byAdding: .second, value: -1, to: date) ?? date
    let c = Calendar.current.dateComponents([.year, .month, .day], from: day)
    return String(format: "%04d-%02d-%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0)
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}

struct ForgetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget",
        abstract:
            "Remove recovery points from the catalog (their data goes at a gc at least 24 h later: `outpost store gc`, also while a relay serves).")
    @OptionGroup var options: StoreOptions
    @Option(help: "The machine the recovery points belong to.") var machine: String?
    @Argument(help: "Recovery point ids (or unique prefixes).") var points: [String]

    func run() async throws {
        let serving = try ServingLock(store: options.store, role: .localWriter)
        defer { withExtendedLifetime(serving) {} }
        let store = try Store.open(at: options.store, purpose: "`outpost forget`")
        for ref in points {
            let p = try store.resolvePoint(ref, machine: machine)
            try store.forget(p.id)
            print("forgot recovery point \(p.id.shortHex) of machine \(p.point.machine)")
        }
    }
}

struct LsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the content of a recovery point.")
    @OptionGroup var target: TargetOptions
    @Option(help: "The machine the recovery point belongs to (needed with `latest` when the store has several).") var machine: String?
    @Flag(name: [.short, .long], help: "Show type, mode, owner, size and time.") var long = false
    @Argument(help: "Recovery point id (a unique prefix) or `latest`.") var point: String
    @Argument(help: "Folder or file inside the recovery point (default: everything).") var path: String = "/"

    func run() async throws {
        try await withAccess(target, purpose: "`outpost ls`") { try await run($0) }
    }

    /// Paths are raw bytes until printed: names (and link targets, owners) come from the store and may hold
    /// terminal escape sequences or bytes that are not UTF-8, which are shown escaped (`\e`, `\x9b`).
    func run(_ access: Access) async throws {
        let info = try await access.resolve(point, machine: machine)
        try await PointListing.list(info, path: path, repository: access.repository) { emit($0, path: $1) }
    }

    func emit(_ node: Node, path bytes: [UInt8]) {
        let path = Terminal.escaped(bytes: bytes)
        guard long else { print(path); return }
        let t: Character =
            switch node.type {
            case .directory: "d"
            case .symlink: "l"
            case .fifo: "p"
            case .socket: "s"
            case .characterDevice: "c"
            case .blockDevice: "b"
            case .hardlink: "h"
            case .file: "-"
            }
        var perms = ""
        for (i, ch) in "rwxrwxrwx".enumerated() { perms.append(node.mode & (0o400 >> UInt32(i)) != 0 ? ch : "-") }
        let user = node.user.isEmpty ? String(node.uid) : Terminal.escaped(bytes: node.user)
        let group = node.group.isEmpty ? String(node.gid) : Terminal.escaped(bytes: node.group)
        let date = Date(timeIntervalSince1970: Double(node.mtimeNanos) / 1e9)
        let link = node.type == .symlink || node.type == .hardlink ? " -> " + Terminal.escaped(bytes: node.linkTarget) : ""
        print("\(t)\(perms) \(user) \(group) \(String(node.size).leftPad(12)) \(date.formatted(.iso8601)) \(path)\(link)")
    }
}

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a recovery point, or some of its paths, into a target folder.",
        discussion:
            "By default nothing that exists in the target is touched: the restore refuses before writing. From a relay, --tier chooses where blobs come from: auto (the default) reads what the relay holds from it and the rest from the vault, relay never asks the vault, vault reads everything from the vault (a test of the off-site copy); the summary says how many bytes came from each. A point only in the vault (pruned from the relay) is restored the same way: what the relay still holds comes from it, the rest from the vault. Exit 3: finished, but some entries could not be restored (listed)."
    )
    @OptionGroup var source: TargetOptions
    @Option(help: "The machine the recovery point belongs to.") var machine: String?
    @Option(help: "Folder to restore into (created if needed).") var target: String
    @Flag(help: "Replace existing files in the target.") var overwrite = false
    @Flag(help: "Keep existing files in the target and restore the rest.") var skip = false
    @Option(help: "Files restored at once (default: 2 × cores locally, 4 × cores from a relay). Fewer leave more of the machine to other work.")
    var workers: Int?
    @Option(help: ArgumentHelp("From a relay: where blobs are read (auto: the relay, and the vault for what it lacks).", valueName: "tier"))
    var tier: RelayAPI.FetchTier = .auto
    @Argument(help: "Recovery point id (a unique prefix) or `latest`.") var point: String
    @Argument(help: "Paths inside the recovery point to restore (default: everything).") var paths: [String] = []

    func validate() throws {
        if overwrite && skip { throw ValidationError("--overwrite and --skip exclude each other; choose one") }
        if let workers, !(1...256).contains(workers) { throw ValidationError("--workers must be 1 to 256") }
        if tier != .auto && source.store != nil {
            throw ValidationError("--tier chooses between a relay and its vault; a local store (--store) has one tier: leave --tier out")
        }
    }

    func run() async throws {
        try await withAccess(source, purpose: "`outpost restore`", tier: tier) { try await run($0) }
    }

    func run(_ access: Access) async throws {
        let info = try await access.resolve(point, machine: machine)
        var options = RestoreOptions(target: target, include: paths, existing: overwrite ? .overwrite : skip ? .skip : .refuse)
        // Over the network, more files (or groups of small files) in flight hide the round trips.
        if access.remoteMachine != nil { options.workers = ProcessInfo.processInfo.activeProcessorCount * 4 }
        if let workers { options.workers = workers }
        let restorer = Restorer(repository: access.repository, point: info, options: options)
        let ticker = ProgressTicker { [restorer] elapsed in
            let b = restorer.progressBytes.load(ordering: .relaxed)
            return "\(formatBytes(b)) restored, \(formatBytes(Int64(elapsed > 0 ? Double(b) / elapsed : 0)))/s"
        }
        let r: RestoreResult
        do { r = try await restorer.run(); ticker.stop() } catch { ticker.stop(); throw error }
        var tiers = ""
        if case .remote(let remote) = access {
            let vault = remote.vaultBytes.load(ordering: .relaxed)
            tiers = "; " + tierSummary(relay: remote.fetchedBytes.load(ordering: .relaxed) - vault, vault: vault)
        }
        print(
            "restored recovery point \(info.id.shortHex) of \(info.point.machine) into \(target): \(r.files) files (\(formatBytes(r.bytes))), \(r.directories) folders, \(r.otherEntries) other entries\(r.skipped > 0 ? ", \(r.skipped) skipped" : "")\(tiers)"
        )
        if !r.failures.isEmpty {
            printErr("\(r.failures.count) problems:")
            for f in r.failures { printErr("  \(Terminal.escaped(f.path)): \(Terminal.escaped(f.reason))") }
            throw CommandExit(code: .partialBackup)
        }
    }
}

/// "read 12.0 MiB from the relay, 3.1 MiB from the vault": stored (compressed) bytes of the blobs each tier served.
func tierSummary(relay: Int64, vault: Int64) -> String {
    "read \(formatBytes(relay)) from the relay, \(formatBytes(vault)) from the vault"
}

/// `--tier auto|relay|vault` (restore, relay restore).
extension RelayAPI.FetchTier: ExpressibleByArgument {}
