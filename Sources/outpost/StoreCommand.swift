import ArgumentParser
import Foundation
import OutpostCore
import OutpostStore

struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Create and maintain a store (the relay's local repository).",
        subcommands: [Init.self, GC.self, RebuildIndex.self, Stats.self]
    )

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an empty store.")
        @OptionGroup var options: StoreOptions
        @Option(help: "zstd level for new chunks (1–19).") var compressionLevel: Int32 = 3
        @Option(help: "Seal pack files at this size, in MiB (1–256).") var packSizeMib = 32

        func validate() throws {
            guard (1...19).contains(compressionLevel) else { throw ValidationError("--compression-level must be between 1 and 19") }
            guard (1...256).contains(packSizeMib) else { throw ValidationError("--pack-size-mib must be between 1 and 256") }
        }

        func run() async throws {
            var random = [UInt8](repeating: 0, count: 16)
            for i in random.indices { random[i] = UInt8.random(in: 0...255) }
            let config = StoreConfiguration(
                id: Hex.encode(random), createdAt: Date(), compressionLevel: compressionLevel, packTargetSize: packSizeMib << 20)
            let store = try Store.initialize(at: options.store, config: config)
            printErr(
                "created store \(store.layout.root) (id \(config.id.prefix(8)), format version \(config.version), zstd level \(compressionLevel))")
        }
    }

    struct RebuildIndex: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Rebuild the SQLite index from the pack files alone.")
        @OptionGroup var options: StoreOptions

        func run() async throws {
            let store: Store
            do {
                store = try Store.open(at: options.store, lock: .exclusive, purpose: "`outpost store rebuild-index`")
            } catch let e as StoreError where e.code == .corrupt {
                // The index itself is unreadable: keep it aside for inspection and start a new one.
                let layout = StoreLayout(root: options.store)
                let stamp = Int(Date().timeIntervalSince1970)
                for suffix in ["", "-wal", "-shm"] {
                    let p = layout.indexPath + suffix
                    if FileManager.default.fileExists(atPath: p) { try FileManager.default.moveItem(atPath: p, toPath: p + ".broken-\(stamp)") }
                }
                printErr("the old index was unreadable (\(e.message)); moved aside as index.sqlite.broken-\(stamp)")
                store = try Store.open(at: options.store, lock: .exclusive, purpose: "`outpost store rebuild-index`")
            }
            let r = try IndexRebuilder(store: store).run()
            for p in r.problems { printErr("warning: \(p)") }
            print(
                "index rebuilt from \(r.packs) packs: \(r.blobs) blobs, \(r.points) recovery points\(r.salvagedPacks > 0 ? " (\(r.salvagedPacks) packs salvaged)" : "")"
            )
            print("note: recovery points forgotten since the last gc are back; forget them again if needed")
        }
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show what the store holds.")
        @OptionGroup var options: StoreOptions
        @Flag(help: "Print JSON.") var json = false

        struct Output: Encodable {
            var packs: Int, blobs: Int, packBytes: Int, rawBytes: Int, storedBytes: Int, recoveryPoints: Int, machines: [String]
        }

        func run() async throws {
            let store = try Store.open(at: options.store, purpose: "`outpost store stats`")
            let t = try store.index.totals()
            let out = Output(
                packs: t.packs, blobs: t.blobs, packBytes: t.packBytes, rawBytes: t.rawBytes, storedBytes: t.storedBytes,
                recoveryPoints: try store.index.points().count, machines: try store.index.machines())
            if json { try printJSON(out); return }
            print("store \(store.layout.root) (format version \(store.config.version), zstd level \(store.config.compressionLevel))")
            print("\(out.recoveryPoints) recovery points of \(out.machines.count) machines")
            print("\(t.blobs) blobs in \(t.packs) packs: \(formatBytes(Int64(t.rawBytes))) of data stored in \(formatBytes(Int64(t.packBytes)))")
        }
    }
}

struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Verify the store; exits 13 when it finds damage.")
    @OptionGroup var options: StoreOptions
    @Flag(help: "Also read, decompress and re-hash every chunk.") var readData = false

    func run() async throws {
        try checkStore(at: options.store, readData: readData)
    }
}

/// `outpost check` and `outpost relay check`: verifies the store at `path` and prints what it found; exits 13
/// (`CommandExit`) on damage.
func checkStore(at path: String, readData: Bool) throws {
    let store = try Store.open(at: path, purpose: "`outpost check`")
    let r = try StoreChecker(store: store, readData: readData).run()
    for n in r.notes { printErr("note: \(n)") }
    for d in r.damage { print("damaged: \(d)") }
    let read = readData ? ", \(formatBytes(r.bytesRead)) read and verified" : ""
    if r.isClean {
        printErr("no damage: \(r.packs) packs, \(r.blobs) blobs, \(r.points) recovery points, \(r.trees) trees checked\(read)")
    } else {
        printErr(
            "DAMAGE FOUND: \(r.damage.count) problems; \(r.affectedPoints.count) recovery points cannot be fully restored (files not listed above restore normally)"
        )
        throw CommandExit(code: .damageFound)
    }
}
