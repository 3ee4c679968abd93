import Foundation
import GRDB
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Maintenance under load and under SIGKILL, through the real binaries (issue 11, "Tests and measurements";
/// docs/format.md §13 and §14): pushes from several machines while prune and gc run in a loop; gc, prune and a
/// relay serving a vault-tier restore each killed with SIGKILL part-way. Each ends with the store checked with
/// `--read-data` and every recovery point still listed restored byte for byte against a copy of what its machine
/// held when it was backed up.
@Suite(.serialized) struct MaintenanceUnderLoadEndToEndTests {
    /// Moves every time gc reads back two days, straight in the index the running relay uses, as if two days had
    /// passed for the index (not for file times). gc with an hour of grace then deletes what nothing live needs,
    /// including what a push in flight was told is stored or sealed before its commit: the design's answer to
    /// that is a refused commit (409, "run the backup again"), never a point committed with missing data.
    static func age(_ store: String) throws {
        var config = Configuration()
        config.busyMode = .timeout(30)
        let db = try DatabaseQueue(path: store + "/index.sqlite", configuration: config)
        try db.write { db in
            try db.execute(sql: "UPDATE blobs SET touched_at = touched_at - 172800")
            try db.execute(sql: "UPDATE packs SET created_at = created_at - 172800")
            try db.execute(sql: "UPDATE forgotten_points SET forgotten_at = forgotten_at - 172800")
        }
    }

    /// A copy of the folder as it is now, modes and times kept (what a restore of the next backup must equal).
    static func snapshot(_ folder: String, to copy: String) throws {
        try FileManager.default.createDirectory(atPath: (copy as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let status = try CLI.system("/bin/cp", ["-a", folder, copy])
        guard status == 0 else { throw HarnessError("cp -a \(folder) \(copy) exited with \(status)") }
    }

    /// Backup `i` of a machine's folder: a new file, the one of two backups ago deleted (so that the packs of
    /// pruned points are partly dead, and gc rewrites them), a ledger rewritten, a sub-folder's note changed; and,
    /// with `cycle`, a file whose content comes back every `cycle.count` backups: with the newest 2 points kept,
    /// its chunks were last in a pruned point, so a push is told they are stored while gc may be deleting them.
    static func change(_ folder: String, machine: String, _ i: Int, cycle: [Data] = []) {
        func write(_ rel: String, _ data: Data) {
            let p = folder + "/" + rel
            try? FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: p, contents: data)
        }
        if i == 0 { write("stable.bin", randomData(200_000)) }
        write("f\(i).bin", randomData(120_000))
        unlink(folder + "/f\(i - 2).bin")
        write("ledger.txt", Data("\(machine) version \(i)\n".utf8) + randomData(20_000))
        write("sub/note\(i % 3).txt", Data("\(machine) note \(i)\n".utf8))
        if !cycle.isEmpty { write("cycle.bin", cycle[i % cycle.count]) }
    }

    /// The id a successful `backup --json` printed.
    static func backupID(_ r: CLI.Result) -> String? {
        r.status == 0 ? (json(r.stdout) as? [String: Any])?["id"] as? String : nil
    }

    static func listedPoints(_ config: String) throws -> [String] {
        let r = try CLI.run(["points", "--config", config, "--json"])
        guard r.status == 0 else { throw HarnessError("points failed: \(r.stderr)") }
        return (json(r.stdout) as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
    }

    /// Restores `id` into a fresh folder and returns what differs from `snapshot` (empty when byte-identical).
    static func restoreDiffers(config: String, _ id: String, source: String, snapshot: String, into target: String) throws -> [String] {
        let r = try CLI.run(["restore", "--config", config, id, "--target", target])
        guard r.status == 0 else { return ["restore of \(id.prefix(12)) exited with \(r.status): \(r.stderr)"] }
        return treesDiffer(snapshot, target + source).map { "\(id.prefix(12)) \($0)" }
    }

    // MARK: - 1. Pushes during gc and prune

    /// Three machines each back up six times against one `relay serve` while `relay prune` (newest 2 per machine)
    /// and `relay gc --grace-hours 1` run in a loop on an index aged two days between runs. Every backup is either
    /// committed or refused with "run the backup again" (and then committed when run again); at the end the store
    /// checks clean with `--read-data` and every point still listed restores exactly what its machine held.
    @Test func pushesFromSeveralMachinesWhileGCAndPruneRunInALoop() async throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        try relay.start()
        let machines = ["alpha", "bravo", "charlie"]
        var configs: [String: String] = [:]
        for m in machines {
            configs[m] = try relay.enroll(m)
            let set = try CLI.run(["relay", "retention", "--data", relay.data, "--machine", m, "--relay-last", "2"])
            #expect(set.status == 0, "\(set.stderr)")
        }
        let data = relay.data, store = relay.data + "/store"
        let backupsPerMachine = 10

        /// One backup attempt of a machine: the id when committed, else the exit code and stderr.
        struct Attempt: Sendable {
            var machine: String
            var backup: Int
            var id: String?
            var status: Int32
            var stderr: String
        }
        let maxAttempts = 5
        let jobs = machines.map { (machine: $0, config: configs[$0]!, folder: s.sub("data-\($0)"), copies: s.sub("copies/\($0)")) }

        /// Each machine's backups in its own task (the machine's next backup after its last one is committed).
        @Sendable func backups() async throws -> [Attempt] {
            try await withThrowingTaskGroup(of: [Attempt].self) { group in
                for job in jobs {
                    group.addTask {
                        var out: [Attempt] = []
                        let cycle = (0..<3).map { _ in randomData(150_000) }
                        for i in 0..<backupsPerMachine {
                            Self.change(job.folder, machine: job.machine, i, cycle: cycle)
                            // The folder does not change again until this backup is committed: one copy per backup.
                            try Self.snapshot(job.folder, to: job.copies + "/\(i)")
                            for _ in 0..<maxAttempts {
                                let r = try await CLI.runAsync(["backup", "--config", job.config, "--json", job.folder])
                                out.append(Attempt(machine: job.machine, backup: i, id: Self.backupID(r), status: r.status, stderr: r.stderr))
                                if r.status == 0 { break }
                            }
                        }
                        return out
                    }
                }
                var all: [Attempt] = []
                for try await part in group { all += part }
                return all
            }
        }

        // Prune, age, gc, until the backups are done (at least once): a bounded number of runs, not a time.
        let finished = Flag()
        let loop = Task { () throws -> [CLI.Result] in
            var runs: [CLI.Result] = []
            repeat {
                runs.append(try await CLI.runAsync(["relay", "prune", "--data", data]))
                try Self.age(store)
                runs.append(try await CLI.runAsync(["relay", "gc", "--data", data, "--grace-hours", "1"]))
            } while !finished.isSet
            return runs
        }
        let attempts: [Attempt]
        do {
            attempts = try await backups()
        } catch {
            finished.set()
            _ = try? await loop.value
            throw error
        }
        finished.set()
        let maintenance = try await loop.value

        // Every attempt committed, or was refused as the design says (exit 21, 409, "run the backup again").
        for a in attempts where a.status != 0 {
            #expect(a.status == 21 && a.stderr.contains("run the backup again"), "\(a.machine) backup \(a.backup): exit \(a.status): \(a.stderr)")
        }
        var snapshotOf: [String: (machine: String, copy: String)] = [:]
        var committed: [String: [String]] = [:]
        for a in attempts { if let id = a.id { snapshotOf[id] = (a.machine, s.sub("copies/\(a.machine)/\(a.backup)")) } }
        for m in machines {
            for i in 0..<backupsPerMachine {
                let ids = attempts.filter { $0.machine == m && $0.backup == i }.compactMap(\.id)
                #expect(ids.count == 1, "\(m) backup \(i) is committed once (within \(maxAttempts) attempts)")
                committed[m, default: []] += ids
            }
        }
        let refused = attempts.filter { $0.status != 0 }.count
        for r in maintenance { #expect(r.status == 0, "a prune or gc beside the pushes failed: \(r.stdout) \(r.stderr)") }

        print("pushes under gc: \(attempts.count) backups, \(refused) refused and run again; \(maintenance.count / 2) prune+gc runs")

        // One more prune and gc once nothing pushes, so that what the loop left dead goes too.
        #expect(try CLI.run(["relay", "prune", "--data", data]).status == 0)
        try Self.age(store)
        #expect(try CLI.run(["relay", "gc", "--data", data, "--grace-hours", "1"]).status == 0)

        // Every point still listed is one that was committed, restores exactly, and each machine keeps its newest 2.
        for m in machines {
            let listed = try Self.listedPoints(configs[m]!)
            #expect(Set(committed[m]!.suffix(2)).isSubset(of: Set(listed)), "\(m): the newest 2 points stay: \(listed)")
            for id in listed {
                guard let copy = snapshotOf[id], copy.machine == m else {
                    Issue.record("\(m): point \(id) was never committed by this test")
                    continue
                }
                let diff = try Self.restoreDiffers(
                    config: configs[m]!, id, source: s.sub("data-\(m)"), snapshot: copy.copy, into: s.sub("restored/\(m)-\(id.prefix(12))"))
                #expect(diff == [], "\(m) point \(id.prefix(12)) restores as backed up")
            }
        }
        #expect(relay.stop() == 0)
        let check = try CLI.run(["relay", "check", "--data", data, "--read-data"])
        #expect(check.status == 0, "\(check.stdout) \(check.stderr)")
    }

    // MARK: - 2. kill -9 during gc

    /// Where a kill lands. The exact instruction cannot be picked; these are moments a test can observe (inotify,
    /// not a timed delay): right after the start, the first write to the index, a new pack in `tmp/` (gc
    /// rewriting a pack, §13 step 3.1), an old pack file deleted (step 3.3), the vault's first change (a prune
    /// applying the vault tier).
    enum KillPoint: String, CaseIterable, Sendable {
        case atStart, indexWritten, packInTmp, packDeleted, vaultChanged
    }

    /// Waits for the event of `point` while `alive` holds (at most a minute); false when none came.
    static func waitFor(_ point: KillPoint, alive: () -> Bool, watch: Watch) -> Bool {
        switch point {
        case .atStart: return true
        case .indexWritten: return watch.wait(alive: alive) { $0.hasPrefix("index.sqlite") }
        case .packInTmp: return watch.wait(alive: alive) { _ in true }
        case .packDeleted: return watch.wait(alive: alive) { $0.hasSuffix(".pack") }
        case .vaultChanged: return watch.wait(alive: alive) { _ in true }
        }
    }

    /// The watch of `point`, set up before the process starts so that no event is missed.
    static func watch(_ point: KillPoint, store: String, vault: String? = nil) -> Watch {
        let w = Watch()
        switch point {
        case .atStart: break
        case .indexWritten: w.add(store, IN_MODIFY)
        case .packInTmp: w.add(store + "/tmp", IN_CREATE)
        case .packDeleted:
            for d in (try? FileManager.default.contentsOfDirectory(atPath: store + "/packs")) ?? [] { w.add(store + "/packs/" + d, IN_DELETE) }
        case .vaultChanged:
            let objects = (vault ?? "") + "/objects"
            w.add(objects, IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE)
            for rel in (try? FileManager.default.subpathsOfDirectory(atPath: objects)) ?? [] {
                var folder: ObjCBool = false
                if FileManager.default.fileExists(atPath: objects + "/" + rel, isDirectory: &folder) && folder.boolValue {
                    w.add(objects + "/" + rel, IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE)
                }
            }
        }
        return w
    }

    /// A store with dead data (points pruned, the index aged), then `relay gc` SIGKILLed at each kill point in
    /// turn. After each kill: `relay check --read-data` is clean, a second gc finishes, and every point left
    /// restores exactly.
    @Test func aGCKilledAtAnyMomentLeavesTheStoreWholeAndTheNextOneFinishes() async throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        try relay.start()
        let config = try relay.enroll("gc1")
        #expect(try CLI.run(["relay", "retention", "--data", relay.data, "--machine", "gc1", "--relay-last", "2"]).status == 0)
        let store = relay.data + "/store", folder = s.sub("data")
        var copies: [String: String] = [:]
        var backup = 0, interrupted = 0
        for point in [KillPoint.atStart, .indexWritten, .packInTmp, .packDeleted] {
            // Dead data for this round: two more backups, the points beyond the newest two pruned, all aged.
            for _ in 0..<2 {
                Self.change(folder, machine: "gc1", backup)
                let copy = s.sub("copies/\(backup)")
                try Self.snapshot(folder, to: copy)
                let r = try CLI.run(["backup", "--config", config, "--json", folder])
                let id = try #require(Self.backupID(r), "backup \(backup): \(r.stderr)")
                copies[id] = copy
                backup += 1
            }
            #expect(try CLI.run(["relay", "prune", "--data", relay.data]).status == 0)
            try Self.age(store)

            let watch = Self.watch(point, store: store)
            let gc = try Child(["relay", "gc", "--data", relay.data, "--grace-hours", "1"])
            let seen = Self.waitFor(point, alive: { gc.isRunning }, watch: watch)
            gc.kill9()
            let end = gc.wait()
            if end.signalled { interrupted += 1 }
            if point == .atStart { #expect(end.signalled, "killed right after its start") }
            print("gc killed at \(point.rawValue): event seen \(seen), interrupted \(end.signalled)")

            let check = try CLI.run(["relay", "check", "--data", relay.data, "--read-data"])
            #expect(check.status == 0, "after a gc killed at \(point.rawValue): \(check.stdout) \(check.stderr)")
            let again = try CLI.run(["relay", "gc", "--data", relay.data, "--grace-hours", "1"])
            #expect(again.status == 0, "the next gc after a kill at \(point.rawValue) finishes: \(again.stdout) \(again.stderr)")
            #expect(try CLI.run(["relay", "check", "--data", relay.data, "--read-data"]).status == 0)
            for id in try Self.listedPoints(config) {
                guard let copy = copies[id] else { Issue.record("point \(id) was never committed by this test"); continue }
                let diff = try Self.restoreDiffers(
                    config: config, id, source: folder, snapshot: copy, into: s.sub("restored/\(point.rawValue)-\(id.prefix(12))"))
                #expect(diff == [], "point \(id.prefix(12)) after a gc killed at \(point.rawValue)")
            }
        }
        #expect(interrupted >= 1)
        #expect(relay.stop() == 0)
    }

    // MARK: - 3. kill -9 during prune, with a vault

    /// A relay registered with a vault, points forwarded, the relay keeping its newest point and the vault the
    /// newest of each of 7 days: `relay prune` SIGKILLed early (right after its start, at its first index write,
    /// at the vault's first change), then a whole prune. Both tiers stay consistent: `verify-vault` and `check
    /// --read-data` are clean, and the newest point restores exactly from the relay and from the vault.
    @Test func aPruneKilledEarlyIsFinishedByTheNextOne() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        try vault.start()
        let relay = try RelayHarness(s)
        // Started before registration, this relay runs no forwarder: only `relay forward --now` forwards.
        try relay.start()
        let config = try relay.enroll("web1")
        let store = relay.data + "/store", folder = s.sub("data")
        try vault.register(relay, as: "branch", in: s)
        let set = try CLI.run(["relay", "retention", "--data", relay.data, "--machine", "web1", "--relay-last", "1", "--vault-daily", "7"])
        #expect(set.status == 0, "\(set.stderr)")

        var backup = 0
        for point in [KillPoint.atStart, .indexWritten, .vaultChanged] {
            var newest = ("", "")
            for _ in 0..<2 {
                Self.change(folder, machine: "web1", backup)
                let copy = s.sub("copies/\(backup)")
                try Self.snapshot(folder, to: copy)
                let r = try CLI.run(["backup", "--config", config, "--json", folder])
                newest = (try #require(Self.backupID(r), "backup \(backup): \(r.stderr)"), copy)
                backup += 1
            }
            let fwd = try CLI.run(["relay", "forward", "--data", relay.data, "--now"])
            #expect(fwd.status == 0, "\(fwd.stdout) \(fwd.stderr)")

            let watch = Self.watch(point, store: store, vault: vault.data)
            let prune = try Child(["relay", "prune", "--data", relay.data])
            let seen = Self.waitFor(point, alive: { prune.isRunning }, watch: watch)
            prune.kill9()
            let end = prune.wait()
            if point == .atStart { #expect(end.signalled, "killed right after its start") }
            print("prune killed at \(point.rawValue): event seen \(seen), interrupted \(end.signalled)")

            let again = try CLI.run(["relay", "prune", "--data", relay.data])
            #expect(again.status == 0, "the prune after a kill at \(point.rawValue): \(again.stdout) \(again.stderr)")
            let verify = try CLI.run(["relay", "verify-vault", "--data", relay.data])
            #expect(verify.status == 0, "the vault after a prune killed at \(point.rawValue): \(verify.stdout) \(verify.stderr)")
            let check = try CLI.run(["relay", "check", "--data", relay.data, "--read-data"])
            #expect(check.status == 0, "the relay after a prune killed at \(point.rawValue): \(check.stdout) \(check.stderr)")
            #expect(try Self.listedPoints(config).first == newest.0, "the newest point stays on the relay")
            let diff = try Self.restoreDiffers(
                config: config, newest.0, source: folder, snapshot: newest.1, into: s.sub("restored/\(point.rawValue)"))
            #expect(diff == [], "the newest point after a prune killed at \(point.rawValue)")
            // The vault's copy of it is whole too: read from the vault alone, on the relay host.
            let offsite = s.sub("offsite/\(point.rawValue)")
            let fromVault = try CLI.run([
                "relay", "restore", "--data", relay.data, "--machine", "web1", newest.0, "--tier", "vault", "--target", offsite,
            ])
            #expect(fromVault.status == 0, "\(fromVault.stdout) \(fromVault.stderr)")
            #expect(treesDiffer(newest.1, offsite + folder) == [], "the vault's copy after a prune killed at \(point.rawValue)")
        }
        #expect(relay.stop() == 0)
        #expect(vault.stop() == 0)
    }

    // MARK: - 4. kill -9 of the relay during a restore from both tiers

    /// How the restore the relay was killed under ends: it rides out the relay's restart with its retries, or
    /// it is stopped (SIGKILL) while it waits for the relay, leaving what a killed restore leaves.
    enum AfterRelayKill: String, CaseIterable, Sendable {
        case restoreRetries, restoreKilledToo, relayStaysDown
    }

    /// Two backups forwarded; the relay's pack of the first one's files deleted, so that they come from the vault
    /// (tier 2) and the second one's from the relay. The relay is SIGKILLed once the restore writes its first
    /// file, and restarted; a restore with `--skip` into the same target then completes it:
    /// byte-identical, no temporary `.outpost-restore-` file left.
    @Test(arguments: AfterRelayKill.allCases)
    func aRelayKilledDuringATwoTierRestoreAndTheRestoreRunAgain(_ after: AfterRelayKill) async throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        try vault.start()
        let relay = try RelayHarness(s)
        try relay.start()
        let config = try relay.enroll("web1")
        let folder = s.sub("data"), packs = relay.data + "/store/packs"
        func packFiles() -> Set<String> {
            Set(((try? FileManager.default.subpathsOfDirectory(atPath: packs)) ?? []).filter { $0.hasSuffix(".pack") })
        }
        func size(_ pack: String) -> Int { ((try? FileManager.default.attributesOfItem(atPath: packs + "/" + pack))?[.size] as? Int) ?? 0 }
        for i in 0..<20 { s.write("data/old\(i).bin", randomData(100_000)) }
        #expect(try CLI.run(["backup", "--config", config, folder]).status == 0)
        let first = packFiles()
        for i in 0..<20 { s.write("data/new\(i).bin", randomData(100_000)) }
        #expect(try CLI.run(["backup", "--config", config, folder]).status == 0)
        try vault.register(relay, as: "branch", in: s)
        let fwd = try CLI.run(["relay", "forward", "--data", relay.data, "--now"])
        #expect(fwd.status == 0, "\(fwd.stdout) \(fwd.stderr)")
        // Restarted after registration, the relay serves with its vault. The first backup's largest pack (its
        // files; its trees may have a pack of their own) is lost.
        #expect(relay.stop() == 0)
        let lost = try #require(first.max { size($0) < size($1) })
        #expect(unlink(packs + "/" + lost) == 0)
        try relay.start()
        // The relay alone no longer has them: the restore needs the vault.
        let relayOnly = try CLI.run(["restore", "--config", config, "latest", "--tier", "relay", "--target", s.sub("relay-only")])
        #expect(relayOnly.status != 0, "\(relayOnly.stdout) \(relayOnly.stderr)")

        let target = s.sub("out"), restored = target + folder
        let restore = try Child(["restore", "--config", config, "latest", "--target", target, "--workers", "1"])
        // Event-driven: the relay dies once the restore writes its first file (under its temporary name: a file
        // in place would be too late, as the restore fetches ahead).
        while restore.isRunning && ((try? FileManager.default.contentsOfDirectory(atPath: restored)) ?? []).isEmpty { usleep(1000) }
        let midway = restore.isRunning
        relay.kill9()
        switch after {
        case .restoreRetries:
            try relay.start()
        case .restoreKilledToo:
            // Once it says it waits for the relay (a client retries each request for about 8 s; a restore of
            // many files against a relay that stays down takes that per file, so it is not waited for).
            while restore.isRunning && !restore.stderrSoFar.contains("waiting for the relay") { usleep(1000) }
            restore.kill9()
            try relay.start()
        case .relayStaysDown:
            // The restore gives up as a whole once a request has used its retries (exit 20, about 8 s), not file
            // after file, each after its own retries.
            let started = Date()
            let gaveUp = restore.wait()
            #expect(gaveUp.status == 20, "\(gaveUp.stderr)")
            #expect(Date().timeIntervalSince(started) < 60, "it stopped at the first request that gave up")
            try relay.start()
        }
        let ended = restore.wait()
        print("restore with the relay killed (\(after.rawValue)): midway \(midway), exit \(ended.status), signalled \(ended.signalled)")

        let again = try CLI.run(["restore", "--config", config, "latest", "--target", target, "--skip"])
        #expect(again.status == 0, "\(again.stdout) \(again.stderr)")
        #expect(treesDiffer(folder, restored) == [])
        let leftovers = ((try? FileManager.default.subpathsOfDirectory(atPath: target)) ?? []).filter {
            ($0 as NSString).lastPathComponent.hasPrefix(".outpost-restore-")
        }
        #expect(leftovers == [], "no temporary file is left")
        #expect(relay.stop() == 0)
        #expect(vault.stop() == 0)
    }
}

extension CLI {
    /// `run`, awaited without holding a thread of the cooperative pool while the child runs (a pool of two
    /// threads on two cores would otherwise run two children at a time).
    static func runAsync(_ args: [String]) async throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        let base = NSTemporaryDirectory() + "/outpost-cli-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: base + ".out", contents: nil)
        _ = FileManager.default.createFile(atPath: base + ".err", contents: nil)
        let out = FileHandle(forWritingAtPath: base + ".out")!, err = FileHandle(forWritingAtPath: base + ".err")!
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<Result, any Error>) in
            p.terminationHandler = { p in
                try? out.close()
                try? err.close()
                let stdout = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
                let stderr = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
                unlink(base + ".out")
                unlink(base + ".err")
                c.resume(returning: Result(status: p.terminationStatus, stdout: stdout, stderr: stderr))
            }
            do { try p.run() } catch {
                p.terminationHandler = nil
                try? out.close()
                try? err.close()
                unlink(base + ".out")
                unlink(base + ".err")
                c.resume(throwing: error)
            }
        }
    }
}

/// A flag one task sets and another reads.
final class Flag: Sendable {
    private let state = Mutex(false)
    var isSet: Bool { state.withLock { $0 } }
    func set() { state.withLock { $0 = true } }
}

/// An `outpost` child to kill: its output goes to files, read once it has exited.
final class Child {
    let process = Process()
    private let base = NSTemporaryDirectory() + "/outpost-child-\(UUID().uuidString)"

    init(_ args: [String]) throws {
        _ = FileManager.default.createFile(atPath: base + ".out", contents: nil)
        _ = FileManager.default.createFile(atPath: base + ".err", contents: nil)
        process.executableURL = URL(fileURLWithPath: CLI.binary)
        process.arguments = args
        process.standardOutput = FileHandle(forWritingAtPath: base + ".out")
        process.standardError = FileHandle(forWritingAtPath: base + ".err")
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    var isRunning: Bool { process.isRunning }

    /// What it wrote to stderr so far.
    var stderrSoFar: String { (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? "" }

    func kill9() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// Waits for the exit: its code (or signal), whether a signal ended it, and its output.
    func wait() -> (status: Int32, signalled: Bool, stdout: String, stderr: String) {
        process.waitUntilExit()
        return (
            process.terminationStatus, process.terminationReason == .uncaughtSignal,
            (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? "",
            (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
        )
    }

    deinit {
        kill9()
        process.waitUntilExit()
        unlink(base + ".out")
        unlink(base + ".err")
    }
}

/// File-system events in a few folders (inotify): what the kill tests wait for, instead of a timed delay.
final class Watch {
    private let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))

    func add(_ folder: String, _ mask: Int32) {
        _ = inotify_add_watch(fd, folder, UInt32(bitPattern: mask))
    }

    /// True once an event names a file `match` accepts; false when `alive` turns false first, or after `timeout`.
    func wait(timeout: TimeInterval = 60, alive: () -> Bool, match: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while Date() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            // Short polls: the process's exit is no inotify event, so it is looked at between them.
            if poll(&pfd, 1, 10) > 0 {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                var i = 0
                while n > 0 && i + 16 <= n {
                    // struct inotify_event: wd, mask, cookie, len (4 bytes each), then len bytes of name.
                    let len = Int(buffer.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: i + 12, as: UInt32.self) })
                    let name = String(decoding: buffer[(i + 16)..<min(n, i + 16 + len)].prefix { $0 != 0 }, as: UTF8.self)
                    if match(name) { return true }
                    i += 16 + len
                }
            }
            if !alive() { return false }
        }
        return false
    }

    deinit { close(fd) }
}
