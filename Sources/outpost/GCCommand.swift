import ArgumentParser
import Foundation
import OutpostRelay
import OutpostStore

/// The options of `outpost store gc` and `outpost relay gc`.
struct GCOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Keep blobs stored or relied on by a push within this many hours, and packs younger, for a later gc. It must exceed the longest backup; beside a running relay or backup at least 1. Below 1, gc needs the store to itself: it takes the exclusive lock, and is refused while a relay serves the store or a job uses it.",
            valueName: "hours"))
    var graceHours = GarbageCollector.defaultGrace / 3600
    @Option(help: "Rewrite a pack when at least this share of it is unused (0–1).") var repackThreshold = 0.1
    @Flag(help: "Say what would be removed; change nothing.") var dryRun = false
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        guard graceHours >= 0, graceHours.isFinite else { throw ValidationError("--grace-hours must be 0 or more, not \(graceHours)") }
        guard (0...1).contains(repackThreshold) else { throw ValidationError("--repack-threshold must be between 0 and 1, not \(repackThreshold)") }
    }
}

/// Shared by both gc commands: what happens beside a running relay is said in their help.
let gcDiscussion = """
    gc runs while the relay serves and while backups run: it takes the store's shared lock (never the exclusive one, \
    unless --grace-hours is below 1) and one gc runs at a time. Data is removed only when no recovery point needs it, \
    no point was forgotten within the grace period, and no push stored it or was told it is stored within the grace \
    period; a push in flight never loses what it relies on (docs/format.md §13). A gc interrupted at any point is \
    finished by the next one.
    """

/// Runs gc on the store at `path` and prints what it did.
func runGC(storePath path: String, options: GCOptions, purpose: String) throws {
    let grace = options.graceHours * 3600
    let alone = grace < GarbageCollector.minimumOnlineGrace
    let store = try Store.open(at: path, lock: alone ? .exclusive : .shared, purpose: purpose)
    let r = try GarbageCollector(
        store: store, repackThreshold: options.repackThreshold, grace: grace, dryRun: options.dryRun,
        treeRoots: try PrunedPoints(store: store).roots()
    ).run()
    if options.json { try printJSON(r); return }
    let would = r.dryRun ? "would remove" : "removed"
    print("kept \(r.liveBlobs) blobs for \(r.points) recovery points; \(would) \(r.deadBlobs) unused blobs")
    print(
        "packs: \(r.packsDeleted) \(r.dryRun ? "to delete" : "deleted"), \(r.packsRepacked) \(r.dryRun ? "to rewrite" : "rewritten into \(r.packsWritten)"), \(r.unindexedPacksDeleted) left-over \(r.dryRun ? "to remove" : "removed"); \(r.dryRun ? "about " : "")\(formatBytes(r.bytesFreed)) \(r.dryRun ? "to free" : "freed")"
    )
    if r.packsInGrace > 0 {
        print("\(r.packsInGrace) packs with unused data are younger than \(options.graceHours) h and were left for a later gc")
    }
    if r.forgottenPointsKept > 0 {
        print("\(r.forgottenPointsKept) recovery points forgotten within the last \(options.graceHours) h keep their data until a later gc")
    }
    if r.blobsTouchedDuringGC > 0 {
        print("\(r.blobsTouchedDuringGC) blobs a push relied on while gc ran were kept (\(r.packsKeptForTouchedBlobs) packs wait for a later gc)")
    }
}

extension StoreCommand {
    struct GC: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc", abstract: "Remove data no recovery point needs (also while a relay serves the store).", discussion: gcDiscussion)
        @OptionGroup var options: StoreOptions
        @OptionGroup var gc: GCOptions

        func run() async throws {
            try runGC(storePath: options.store, options: gc, purpose: "`outpost store gc`")
        }
    }
}

extension RelayCommand {
    struct GC: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc", abstract: "Remove data no recovery point of the relay needs, while it serves.", discussion: gcDiscussion)
        @OptionGroup var relay: RelayOptions
        @OptionGroup var gc: GCOptions

        func run() async throws {
            try relay.directory.requireRelay()
            try runGC(storePath: relay.directory.storePath, options: gc, purpose: "`outpost relay gc`")
        }
    }
}
