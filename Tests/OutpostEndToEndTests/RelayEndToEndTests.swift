import Foundation
import Logging
import NIOHTTP1
import OutpostClient
import OutpostCore
import OutpostTLS
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The relay and the push client driven as an operator and two protected machines would, over TLS on loopback.
@Suite(.serialized) struct RelayEndToEndTests {
    func corpus(_ s: Scratch, _ name: String, shared: Data) -> String {
        s.write("\(name)/shared.bin", shared)
        s.write("\(name)/own/\(name).txt", Data(String(repeating: "\(name) ledger line\n", count: 10_000).utf8), mode: 0o600)
        s.write("\(name)/own/tool.sh", Data("#!/bin/sh\n".utf8), mode: 0o755)
        s.write("\(name)/empty", Data())
        symlink("own/tool.sh", s.sub("\(name)/link"))
        return s.sub(name)
    }

    func client(_ configPath: String) throws -> RelayClient {
        try RelayClient(configuration: try ClientConfiguration.load(path: configPath))
    }

    @Test func twoMachinesPushRestoreAndStayApart() async throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        try relay.start()
        let a = try relay.enroll("alpha")
        let b = try relay.enroll("beta")
        #expect(try String(contentsOfFile: a, encoding: .utf8).contains(relay.fingerprint))
        let perms = try FileManager.default.attributesOfItem(atPath: a)[.posixPermissions] as? Int
        #expect(perms == 0o600, "the client configuration holds a credential")

        let shared = randomData(2_000_000)
        let dataA = corpus(s, "a", shared: shared)
        let dataB = corpus(s, "b", shared: shared)
        let ba = try CLI.run(["backup", "--config", a, dataA])
        #expect(ba.status == 0, "\(ba.stderr)")
        let bb = try CLI.run(["backup", "--config", b, "--json", dataB])
        #expect(bb.status == 0, "\(bb.stderr)")

        let outA = s.sub("restore-a")
        let ra = try CLI.run(["restore", "--config", a, "latest", "--target", outA])
        #expect(ra.status == 0, "\(ra.stderr)")
        #expect(treesDiffer(dataA, outA + dataA) == [])
        let outB = s.sub("restore-b")
        #expect(try CLI.run(["restore", "--config", b, "latest", "--target", outB, dataB + "/own"]).status == 0)
        #expect(treesDiffer(dataB + "/own", outB + dataB + "/own") == [])
        #expect(!FileManager.default.fileExists(atPath: outB + dataB + "/shared.bin"), "only the named path is restored")

        // The shared file is stored once for both machines.
        let stats = try CLI.run(["store", "stats", "--store", relay.data + "/store", "--json"])
        let raw = (json(stats.stdout) as? [String: Any])?["rawBytes"] as? Int ?? 0
        #expect(raw < 2 * shared.count, "dedup across machines")

        // Each machine sees only its own recovery points…
        let pointsA = json(try CLI.run(["points", "--config", a, "--json"]).stdout) as? [[String: Any]] ?? []
        let pointsB = json(try CLI.run(["points", "--config", b, "--json"]).stdout) as? [[String: Any]] ?? []
        #expect(pointsA.count == 1 && pointsB.count == 1)
        #expect(pointsA.allSatisfy { $0["machine"] as? String == "alpha" })
        let bID = try #require(pointsB.first?["id"] as? String)
        let bRoot = try #require(pointsB.first?["rootTree"] as? String)
        let steal = try CLI.run(["restore", "--config", a, String(bID.prefix(8)), "--target", s.sub("stolen")])
        #expect(steal.status == 14, "alpha cannot even name beta's recovery point")
        // …and cannot read beta's blobs by id.
        let ca = try client(a)
        let denied = await #expect(throws: ClientError.self) {
            _ = try await ca.call(.POST, "/v1/blobs", body: WireFormat.encodeIDs([BlobID(hex: bRoot)!]))
        }
        #expect(denied?.code == .forbidden)
        await ca.close()

        let machines = json(try CLI.run(["relay", "machines", "--data", relay.data, "--json"]).stdout) as? [[String: Any]] ?? []
        #expect(Set(machines.compactMap { $0["name"] as? String }) == ["alpha", "beta"])
        #expect(try CLI.run(["relay", "check", "--data", relay.data, "--read-data"]).status == 0)
        #expect(relay.stop() == 0, "SIGTERM stops the relay gracefully")
    }

    @Test func tokensAndCredentialsAreChecked() async throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        try relay.start()
        let wrong = try CLI.run([
            "enroll", "--relay", relay.url, "--token", String(repeating: "0", count: 64), "--fingerprint", relay.fingerprint, "--config",
            s.sub("x.toml"),
        ])
        #expect(wrong.status == 19)
        #expect(wrong.stderr.contains("not known"))

        // An expired token is refused: MachineCatalogTests (with a clock); `--valid-hours 0` is itself refused.
        #expect(try CLI.run(["relay", "add-machine", "--data", relay.data, "--valid-hours", "0", "late"]).status == 64)

        let add = try CLI.run(["relay", "add-machine", "--data", relay.data, "once"])
        let token = add.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(add.stdout.split(separator: "\n").count == 1, "the token is alone on stdout")
        #expect(try CLI.run(["enroll", "--relay", relay.url, "--token", token, "--config", s.sub("once.toml")]).status == 0)
        let reuse = try CLI.run(["enroll", "--relay", relay.url, "--token", token, "--config", s.sub("again.toml")])
        #expect(reuse.status == 19)
        #expect(reuse.stderr.contains("already used"))
        let dup = try CLI.run(["relay", "add-machine", "--data", relay.data, "once"])
        #expect(dup.status != 0, "two machines cannot share a name")

        let badFP = try CLI.run([
            "enroll", "--relay", relay.url, "--token", "whatever", "--fingerprint", String(repeating: "ab", count: 32), "--config", s.sub("fp.toml"),
        ])
        #expect(badFP.status == 15)
        #expect(badFP.stderr.contains("not the expected"))

        // A tampered credential is refused.
        let cfg = s.sub("once.toml")
        let text = try String(contentsOfFile: cfg, encoding: .utf8)
        let forged = s.sub("forged.toml")
        try text.replacingOccurrences(of: "credential = \"outpost1:once:", with: "credential = \"outpost1:once:ff").write(
            toFile: forged, atomically: true, encoding: .utf8)
        let denied = try CLI.run(["points", "--config", forged])
        #expect(denied.status == 19)
        #expect(denied.stderr.contains("not valid"))

        #expect(try CLI.run(["relay", "remove-machine", "--data", relay.data, "once"]).status == 0)
        #expect(try CLI.run(["points", "--config", cfg]).status == 19, "a removed machine's credential stops working")
    }

    @Test func aTamperedUploadIsRejectedAndNothingIsStored() async throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        try relay.start()
        let c = try client(try relay.enroll("mallory"))
        defer { Task { await c.close() } }
        let claimed = Array("the payroll file of another machine".utf8)
        let sent = Array("something else entirely, 34 bytes".utf8)
        let honest = Array("an honest chunk".utf8)
        let forged = PreparedBlob(id: BlobID.hash(claimed), kind: .data, compression: .none, stored: sent, rawLength: sent.count)
        let good = honest.withUnsafeBytes { PreparedBlob.make(kind: .data, plaintext: $0, compressor: nil) }
        let e = await #expect(throws: ClientError.self) {
            _ = try await c.call(.POST, "/v1/chunks", body: WireFormat.encodeFrames([good, forged]))
        }
        #expect(e?.message.contains("does not match") == true)
        let missing = try await c.call(.POST, "/v1/chunks/missing", body: WireFormat.encodeIDs([forged.id, good.id, BlobID.hash(sent)]))
        #expect(try WireFormat.decodeIDs(missing, max: 10).count == 3, "nothing of the rejected request was stored")
        let garbage = await #expect(throws: ClientError.self) {
            _ = try await c.call(.POST, "/v1/chunks/missing", body: [1, 2, 3])
        }
        #expect(garbage?.message.contains("multiple of 32") == true)
        await c.close()
    }

    @Test func sixteenMachinesPushAtOnce() async throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        try relay.start()
        let shared = randomData(1_000_000)
        var configs: [String] = []
        for i in 0..<16 { configs.append(try relay.enroll("m\(i)")) }
        let jobs = try (0..<16).map { i -> Process in
            s.write("d\(i)/shared.bin", shared)
            s.write("d\(i)/own.bin", randomData(300_000))
            return try CLI.start(["backup", "--config", configs[i], s.sub("d\(i)")])
        }
        for j in jobs { j.waitUntilExit() }
        #expect(jobs.allSatisfy { $0.terminationStatus == 0 })
        let stats = json(try CLI.run(["store", "stats", "--store", relay.data + "/store", "--json"]).stdout) as? [String: Any]
        #expect((stats?["recoveryPoints"] as? Int) == 16)
        let rawBytes: Int = stats?["rawBytes"] as? Int ?? Int.max
        let limit = 1_000_000 + 16 * 300_000 + 200_000
        #expect(rawBytes < limit, "the shared file is stored once")
        #expect(try CLI.run(["relay", "check", "--data", relay.data, "--read-data"]).status == 0)
    }

    /// SIGKILL the relay in the middle of a push: after a restart the store is clean, and running the backup
    /// again finishes it without storing again what had been sealed.
    @Test func aKilledRelayLeavesACleanStoreAndThePushCompletes() async throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        try relay.start()
        let cfg = try relay.enroll("busy")
        for i in 0..<10 { s.write("big/f\(i)", randomData(30_000_000)) }
        let job = try CLI.start(["backup", "--config", cfg, s.sub("big")])
        let packs = relay.data + "/store/packs"
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline && job.isRunning {
            let n = ((try? FileManager.default.subpathsOfDirectory(atPath: packs)) ?? []).filter { $0.hasSuffix(".pack") }.count
            if n >= 2 { break }
            usleep(5000)
        }
        #expect(job.isRunning, "the push ended before the relay could be killed")
        relay.kill9()
        #expect(try CLI.run(["relay", "check", "--data", relay.data, "--read-data"]).status == 0, "clean after SIGKILL")
        try relay.start()
        job.waitUntilExit()
        // The interrupted run either rode out the restart with its retries or stopped with a clear error.
        let again = try CLI.run(["backup", "--config", cfg, "--json", s.sub("big")])
        #expect(again.status == 0, "\(again.stderr)")
        let summary = (json(again.stdout) as? [String: Any])?["summary"] as? [String: Any]
        let added: Int = summary?["bytesAddedRaw"] as? Int ?? Int.max
        #expect(added < 270_000_000, "what was sealed before the kill is not stored again")
        #expect(try CLI.run(["relay", "check", "--data", relay.data, "--read-data"]).status == 0)
        let out = s.sub("out")
        #expect(try CLI.run(["restore", "--config", cfg, "latest", "--target", out]).status == 0)
        #expect(treesDiffer(s.sub("big"), out + s.sub("big")) == [])
    }

    static let canMount: Bool = {
        let probe = NSTemporaryDirectory() + "/outpost-e2e-mount-\(getpid())"
        mkdir(probe, 0o700)
        defer { rmdir(probe) }
        guard mount("tmpfs", probe, "tmpfs", 0, "size=1m") == 0 else { return false }
        umount(probe)
        return true
    }()

    @Test(.enabled(if: canMount, "needs root to mount a small tmpfs for the relay's disk"))
    func aFullRelayDiskFailsThePushCleanlyAndTheNextPushWorks() async throws {
        let s = Scratch()
        let disk = s.sub("disk")
        mkdir(disk, 0o755)
        #expect(mount("tmpfs", disk, "tmpfs", 0, "size=16m") == 0)
        defer { umount(disk) }
        let relay = try RelayHarness(s, dataDir: disk + "/relay")
        try relay.start()
        let cfg = try relay.enroll("fat")
        let ballast = disk + "/ballast"
        FileManager.default.createFile(atPath: ballast, contents: randomData(5_000_000))
        s.write("data/small", randomData(200_000))
        #expect(try CLI.run(["backup", "--config", cfg, s.sub("data")]).status == 0)
        s.write("data/huge", randomData(20_000_000))
        let full = try CLI.run(["backup", "--config", cfg, s.sub("data")])
        #expect(full.status == 16, "\(full.stderr)")
        #expect(full.stderr.contains("relay's disk is full"))
        let points = json(try CLI.run(["points", "--config", cfg, "--json"]).stdout) as? [Any]
        #expect(points?.count == 1, "no recovery point was committed")
        #expect(try CLI.run(["relay", "check", "--data", relay.data, "--read-data"]).status == 0)
        unlink(ballast)
        unlink(s.sub("data/huge"))
        s.write("data/more", randomData(100_000))
        let next = try CLI.run(["backup", "--config", cfg, s.sub("data")])
        #expect(next.status == 0, "\(next.stderr)")
        relay.stop()
    }
}
