import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 8, through the real binaries: relay names, a rebuild with a wrong passphrase, and tier 2 for damage.
@Suite(.serialized) struct VaultHardeningEndToEndTests {
    /// A relay whose machine pushed 20 files, registered with `vault` under `name`.
    func setUp(_ s: Scratch, vault: VaultHarness, name: String) throws -> (relay: RelayHarness, config: String, data: String) {
        let relay = try RelayHarness(s, name: name)
        try relay.start()
        let config = try relay.enroll("clerk-\(name)")
        let data = s.sub("\(name)-data")
        for i in 0..<20 { s.write("\(name)-data/doc\(i).txt", randomData(50_000)) }
        let b = try CLI.run(["backup", "--config", config, data])
        guard b.status == 0 else { throw HarnessError("backup failed: \(b.stderr)") }
        let reg = try CLI.run([
            "relay", "register", "--data", relay.data, "--vault-credentials", try vault.credentials(name),
            "--passphrase-file", s.sub("\(name).pass"), "--generate-passphrase", "--name", name, "--fast-kdf-for-tests",
        ])
        guard reg.status == 0 else { throw HarnessError("register failed: \(reg.stderr)") }
        return (relay, config, data)
    }

    @Test func relayNamesAreCheckedUniqueAndPrintedEscaped() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s, replication: "lrs")
        try vault.start()
        _ = try setUp(s, vault: vault, name: "east")
        let second = try RelayHarness(s, name: "second")
        let creds = try vault.credentials("second")
        try "a perfectly long passphrase 1\n".write(toFile: s.sub("second.pass"), atomically: true, encoding: .utf8)
        func register(_ name: String) throws -> CLI.Result {
            try CLI.run([
                "relay", "register", "--data", second.data, "--vault-credentials", creds, "--passphrase-file", s.sub("second.pass"),
                "--name=\(name)", "--fast-kdf-for-tests",
            ])
        }
        // Refused before the credentials file is spent, with the rule.
        for bad in ["-rf", "two words", "esc\u{1b}[2J", String(repeating: "n", count: 65)] {
            let r = try register(bad)
            #expect(r.status == 64, "\(bad.debugDescription): \(r.stderr)")
            #expect(r.stderr.contains("letters, digits"))
            #expect(!r.stderr.contains("\u{1b}"), "the name is not echoed raw")
        }
        // The vault refuses a name in use, and the file stays usable.
        let taken = try register("east")
        #expect(taken.status == 15, "\(taken.stderr)")
        #expect(taken.stderr.contains("already registered"))
        #expect(try register("west").status == 0)

        // A registry from before names were checked may hold anything: listed escaped.
        vault.stop()
        var registry = try String(contentsOfFile: vault.data + "/registry.json", encoding: .utf8)
        registry = registry.replacingOccurrences(of: "\"west\"", with: "\"we\\u001b[31mst\"")
        try registry.write(toFile: vault.data + "/registry.json", atomically: true, encoding: .utf8)
        let listed = try CLI.run(["vault", "relays", "--data", vault.data])
        #expect(listed.status == 0)
        #expect(!listed.stdout.contains("\u{1b}"))
        #expect(listed.stdout.contains("we\\e[31mst"), "one escape convention: Terminal.escaped")
        let removed = try CLI.run(["vault", "remove-relay", "--data", vault.data, "east"])
        #expect(removed.status == 0, "\(removed.stderr)")
    }

    @Test func aRebuildWithAWrongPassphraseChangesNothing() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s, replication: "lrs")
        try vault.start()
        let (relay, config, data) = try setUp(s, vault: vault, name: "live")
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)

        let recovery = try vault.credentials("rec", recover: "live")
        try "not the passphrase at all, sorry\n".write(toFile: s.sub("wrong.pass"), atomically: true, encoding: .utf8)
        let target = s.sub("rebuilt")
        let wrong = try CLI.run(["relay", "rebuild", "--data", target, "--vault-credentials", recovery, "--passphrase-file", s.sub("wrong.pass")])
        #expect(wrong.status == 19, "\(wrong.stderr)")
        #expect(wrong.stderr.contains("passphrase is wrong"))
        #expect(wrong.stderr.contains("Nothing was changed"))
        #expect(!FileManager.default.fileExists(atPath: target), "nothing written")

        // The live relay keeps its credential: a new point is forwarded.
        s.write("live-data/later.txt", randomData(10_000))
        #expect(try CLI.run(["backup", "--config", config, data]).status == 0)
        let forward = try CLI.run(["relay", "forward", "--data", relay.data, "--now"])
        #expect(forward.status == 0, "\(forward.stderr)")
        #expect(forward.stdout.contains("forwarded 1 recovery points"))

        // The recovery file was not spent: with the right passphrase it rebuilds.
        let right = try CLI.run(["relay", "rebuild", "--data", target, "--vault-credentials", recovery, "--passphrase-file", s.sub("live.pass")])
        #expect(right.status == 0, "\(right.stderr)")
        #expect(right.stdout.contains("rebuilt 2 recovery points"))
    }

    @Test func aBlobDamagedOnTheRelayIsServedFromTheVault() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s, replication: "lrs")
        try vault.start()
        let (relay, config, data) = try setUp(s, vault: vault, name: "relay")
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)
        #expect(relay.stop() == 0)
        // One byte flipped in the middle of the largest pack: inside a stored blob, which still has its index entry.
        let packs = relay.data + "/store/packs"
        let files = try FileManager.default.subpathsOfDirectory(atPath: packs).filter { $0.hasSuffix(".pack") }
        func size(_ p: String) -> Int { (try? FileManager.default.attributesOfItem(atPath: packs + "/" + p)[.size] as? Int) ?? 0 }
        let victim = try #require(files.max { size($0) < size($1) })
        let fd = open(packs + "/" + victim, O_RDWR)
        var b: UInt8 = 0
        let at = off_t(size(victim) / 2)
        pread(fd, &b, 1, at)
        b ^= 0x40
        pwrite(fd, &b, 1, at)
        close(fd)
        try relay.start()
        let out = s.sub("restored")
        let r = try CLI.run(["restore", "--config", config, "latest", "--target", out])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(treesDiffer(data, out + data) == [])
        #expect(relay.log.contains("damaged on the relay"))
        #expect(relay.log.contains("served from the vault"))
    }
}
