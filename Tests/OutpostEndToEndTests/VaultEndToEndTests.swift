// Longer than the 350 lines a file should keep to: one suite of end-to-end scenarios that share a running vault
// and relay harness (register, forward, restore from tier 2, rebuild, immutability); each test is one scenario.
import Crypto
import Foundation
import Logging
import OutpostCore
import OutpostForwarder
import OutpostHTTP
import OutpostStore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The vault and the relay's forwarder, driven through the real binaries on loopback.
@Suite(.serialized) struct VaultEndToEndTests {
    static let marker = "OUTPOST-SECRET-MARKER-4417"

    /// A relay with one machine that pushed a corpus with the marker in many files; registered with `vault`.
    func setUp(_ s: Scratch, vault: VaultHarness, relayName: String = "relay") throws -> (RelayHarness, files: [Data]) {
        let relay = try RelayHarness(s, name: relayName)
        try relay.start()
        let cfg = try relay.enroll("clerk-\(relayName)")
        var files: [Data] = []
        for i in 0..<20 {
            var d = Data("\(Self.marker) invoice \(i)\n".utf8)
            d.append(randomData(50_000))
            s.write("\(relayName)-data/doc\(i).txt", d)
            files.append(d)
        }
        let b = try CLI.run(["backup", "--config", cfg, s.sub("\(relayName)-data")])
        guard b.status == 0 else { throw HarnessError("backup failed: \(b.stderr)") }
        let reg = try CLI.run([
            "relay", "register", "--data", relay.data, "--vault-credentials", try vault.credentials(relayName),
            "--passphrase-file", s.sub("\(relayName).pass"), "--generate-passphrase", "--name", relayName, "--fast-kdf-for-tests",
        ])
        guard reg.status == 0 else { throw HarnessError("register failed: \(reg.stderr)") }
        return (relay, files)
    }

    @Test func forwardedDataIsEncryptedAndUnnamedInTheVault() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        try vault.start()
        let (relay, files) = try setUp(s, vault: vault)
        let fwd = try CLI.run(["relay", "forward", "--data", relay.data, "--now"])
        #expect(fwd.status == 0, "\(fwd.stderr)")
        #expect(fwd.stdout.contains("forwarded 1 recovery points"))
        let states = json(try CLI.run(["relay", "forwarding", "--data", relay.data, "--json"]).stdout) as? [[String: Any]]
        #expect(states?.first?["state"] as? String == "forwarded")

        let everything = vault.allBytes()
        #expect(everything.count > 20 * 50_000, "the vault holds the data (and its GRS copy)")
        #expect(!contains(everything, Array(Self.marker.utf8)), "no plaintext in the vault")
        for f in files {
            let digest = Array(SHA256.hash(data: f))
            #expect(!contains(everything, digest), "no chunk id (raw)")
            #expect(!contains(everything, Array(Hex.encode(digest).utf8)), "no chunk id (hex)")
        }
        #expect(try CLI.run(["relay", "verify-vault", "--data", relay.data]).status == 0)
        // Forwarding again sends nothing new.
        let again = try CLI.run(["relay", "forward", "--data", relay.data, "--now"])
        #expect(again.stdout.contains("forwarded 0 recovery points"))
        #expect(vault.stop() == 0)
    }

    @Test func relaysAreIsolatedAndCredentialsFilesAreOneShot() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        try vault.start()
        let (r1, _) = try setUp(s, vault: vault, relayName: "east")
        #expect(try CLI.run(["relay", "forward", "--data", r1.data, "--now"]).status == 0)
        let (r2, _) = try setUp(s, vault: vault, relayName: "west")

        // west's credential sees only west's container.
        let linkWest = try VaultLink.load(data: r2.data)
        let linkEast = try VaultLink.load(data: r1.data)
        let west = try VaultClient(
            url: linkWest.url, certificatePEM: linkWest.certificate, credential: linkWest.credential, logger: Logger(label: "t"))
        let east = try VaultClient(
            url: linkEast.url, certificatePEM: linkEast.certificate, credential: linkEast.credential, logger: Logger(label: "t"))
        let eastObjects = try await east.list(prefix: "k/")
        #expect(!eastObjects.isEmpty)
        #expect(try await west.list(prefix: "k/").isEmpty, "west cannot list east's objects")
        #expect(try await west.get(try #require(eastObjects.first).key) == nil, "west cannot read east's objects by name")
        await west.close()
        await east.close()

        // A used, an expired and another vault's credentials file are refused with a clear error.
        let used = s.sub("east.creds")
        let r3 = try RelayHarness(s, name: "third")
        let reuse = try CLI.run([
            "relay", "register", "--data", r3.data, "--vault-credentials", used, "--passphrase-file", s.sub("east.pass"), "--fast-kdf-for-tests",
        ])
        #expect(reuse.status == 19)
        #expect(reuse.stderr.contains("already used"))
        let fresh = try vault.credentials("late")
        var text = try String(contentsOfFile: fresh, encoding: .utf8)
        let expiry = try #require(text.range(of: #""expiresAt" : "[^"]+""#, options: .regularExpression))
        text.replaceSubrange(expiry, with: #""expiresAt" : "2020-01-01T00:00:00Z""#)
        try text.write(toFile: fresh, atomically: true, encoding: .utf8)
        let expired = try CLI.run([
            "relay", "register", "--data", r3.data, "--vault-credentials", fresh, "--passphrase-file", s.sub("east.pass"), "--fast-kdf-for-tests",
        ])
        #expect(expired.status == 19)
        #expect(expired.stderr.contains("expired"))
        let other = try VaultHarness(s, name: "othervault")
        try other.start()
        var foreign = try String(contentsOfFile: try other.credentials("foreign"), encoding: .utf8)
        foreign = foreign.replacingOccurrences(of: "127.0.0.1:\(other.port)", with: "127.0.0.1:\(vault.port)")
        let foreignPath = s.sub("foreign-edited.creds")
        try foreign.write(toFile: foreignPath, atomically: true, encoding: .utf8)
        let wrongVault = try CLI.run([
            "relay", "register", "--data", r3.data, "--vault-credentials", foreignPath, "--passphrase-file", s.sub("east.pass"),
            "--fast-kdf-for-tests",
        ])
        #expect(wrongVault.status != 0, "another vault's credentials file is refused")
        #expect(wrongVault.stderr.contains("certificate") || wrongVault.stderr.contains("not issued by this vault"))
        let weak = try CLI.run([
            "relay", "register", "--data", r3.data, "--vault-credentials", try vault.credentials("weak"), "--passphrase-file", s.sub("weak.pass"),
        ])
        #expect(weak.status != 0)
    }

    @Test func aFlippedByteInTheVaultIsNamedAndAWrongPassphraseIsSaidToBeWrong() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s, replication: "lrs")
        try vault.start()
        let (relay, _) = try setUp(s, vault: vault)
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)
        let victim = try #require(vault.objectFiles().first { $0.contains("/k/") })
        let fd = open(victim, O_RDWR)
        var b: UInt8 = 0
        pread(fd, &b, 1, 40)
        b ^= 0x20
        pwrite(fd, &b, 1, 40)
        close(fd)
        let verify = try CLI.run(["relay", "verify-vault", "--data", relay.data])
        #expect(verify.status == 13)
        #expect(verify.stdout.contains((victim as NSString).lastPathComponent))
        #expect(verify.stdout.contains("tampered"))
        // The relay still holds the blobs: a repair sends them again in new packs and the vault reads back intact.
        let repair = try CLI.run(["relay", "verify-vault", "--data", relay.data, "--repair"])
        #expect(repair.status == 0, "\(repair.stderr)")
        #expect(repair.stderr.contains("sent again in new packs"))
        #expect(try CLI.run(["relay", "verify-vault", "--data", relay.data]).status == 0)

        try "a completely wrong passphrase\n".write(toFile: s.sub("wrong.pass"), atomically: true, encoding: .utf8)
        try "a brand new passphrase 2026\n".write(toFile: s.sub("new.pass"), atomically: true, encoding: .utf8)
        let wrong = try CLI.run([
            "relay", "change-passphrase", "--data", relay.data, "--old-passphrase-file", s.sub("wrong.pass"), "--new-passphrase-file",
            s.sub("new.pass"),
        ])
        #expect(wrong.status == 19)
        #expect(wrong.stderr.contains("passphrase is wrong"))
        let before = vault.objectFiles().count
        let right = try CLI.run([
            "relay", "change-passphrase", "--data", relay.data, "--old-passphrase-file", s.sub("relay.pass"), "--new-passphrase-file",
            s.sub("new.pass"),
        ])
        #expect(right.status == 0, "\(right.stderr)")
        #expect(vault.objectFiles().count == before, "only the re-wrapped key is uploaded, and the old one goes")
        let keys = vault.objectFiles().filter { $0.contains("/keys/") }
        #expect(keys.count == 1, "the old passphrase's key file is no longer in the container: \(keys)")
        let afterChange = try CLI.run([
            "relay", "change-passphrase", "--data", relay.data, "--old-passphrase-file", s.sub("relay.pass"), "--new-passphrase-file",
            s.sub("wrong.pass"),
        ])
        #expect(afterChange.status == 19, "the old passphrase no longer opens the key")

        // A rebuild passes over the damaged copy that the repaired pack still lists, and takes the good one.
        let rebuilt = s.sub("rebuilt")
        let rebuild = try CLI.run([
            "relay", "rebuild", "--data", rebuilt, "--vault-credentials", try vault.credentials("rec", recover: "relay"),
            "--passphrase-file", s.sub("new.pass"),
        ])
        #expect(rebuild.status == 0, "\(rebuild.stderr)")
        #expect(try CLI.run(["relay", "check", "--data", rebuilt, "--read-data"]).status == 0)
    }

    @Test func aVaultKilledMidForwardLeadsToACompleteForwardWithoutDuplicates() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s, replication: "lrs")
        try vault.start()
        let relay = try RelayHarness(s)
        try relay.start()
        let cfg = try relay.enroll("bulk")
        for i in 0..<8 { s.write("bulk/f\(i)", randomData(8_000_000)) }
        #expect(try CLI.run(["backup", "--config", cfg, s.sub("bulk")]).status == 0)
        #expect(
            try CLI.run([
                "relay", "register", "--data", relay.data, "--vault-credentials", try vault.credentials("r"),
                "--passphrase-file", s.sub("p"), "--generate-passphrase", "--fast-kdf-for-tests",
            ]).status == 0)
        let job = try CLI.start(["relay", "forward", "--data", relay.data, "--now", "--limit-kbps", "80000"])
        let deadline = Date().addingTimeInterval(60)
        // The key file and two packs are in: kill the vault with the rest of the forward in flight.
        while Date() < deadline && job.isRunning && vault.objectFiles().filter({ $0.contains("/k/") }).count < 2 { usleep(5000) }
        vault.kill9()
        job.waitUntilExit()
        #expect(job.terminationStatus != 0, "the forward fails while the vault is down")
        let states = json(try CLI.run(["relay", "forwarding", "--data", relay.data, "--json"]).stdout) as? [[String: Any]]
        #expect(states?.first?["state"] as? String == "failed")
        try vault.start()
        let resumed = try CLI.run(["relay", "forward", "--data", relay.data, "--now"])
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let stats = json(try CLI.run(["store", "stats", "--store", relay.data + "/store", "--json"]).stdout) as? [String: Any]
        let blobs = try #require(stats?["blobs"] as? Int)
        // One object per blob of the store (data, trees, point records), one p/ entry per point, one key file:
        // nothing twice.
        let points = try #require(stats?["recoveryPoints"] as? Int)
        // Every blob of the store is in the vault once, the vault holds exactly the packs the relay recorded
        // (a pack whose acknowledgement was lost was put again under the same name), one p/ entry per point,
        // one key file and the container's verifier: nothing twice.
        let store = try openStoreAsTheBinaryDoes(relay.data + "/store")
        let ledger = try ForwardingLedger(store: store).summary()
        #expect(ledger.blobs == blobs)
        #expect(ledger.packs >= 7, "64 MB in packs of about 8 MiB")
        #expect(vault.objectFiles().filter { $0.contains("/k/") }.count == ledger.packs)
        #expect(vault.objectFiles().count == ledger.packs + points + 2)
        #expect(try CLI.run(["relay", "verify-vault", "--data", relay.data]).status == 0)
    }

    /// A repair cut short after forgetting the damaged blobs: the next ordinary forward computes the damaged
    /// pack's name again, finds it taken, reads it back, sees the damage, and sends the pack under a new name.
    @Test func aDamagedPackUnderTheSameNameIsNotTakenForTheOneBuilt() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s, replication: "lrs")
        try vault.start()
        let (relay, _) = try setUp(s, vault: vault)
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)
        let packs = vault.objectFiles().filter { $0.contains("/k/") }
        #expect(packs.count == 1)
        let victim = try #require(packs.first)
        let fd = open(victim, O_RDWR)
        var b: UInt8 = 0
        pread(fd, &b, 1, 40)
        b ^= 0x20
        pwrite(fd, &b, 1, 40)
        close(fd)
        #expect(try CLI.run(["relay", "verify-vault", "--data", relay.data]).status == 13)
        // What an interrupted `verify-vault --repair` leaves: every blob forgotten, every point pending.
        do {
            let store = try openStoreAsTheBinaryDoes(relay.data + "/store")
            let ledger = ForwardingLedger(store: store)
            try ledger.unmark(try ledger.sent().map(\.0))
            try ledger.reopenForwarded()
        }
        let again = try CLI.run(["relay", "forward", "--data", relay.data, "--now"], environment: ["OUTPOST_LOG_LEVEL": "warning"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stderr.contains("a different pack already has this name"))
        #expect(vault.objectFiles().filter { $0.contains("/k/") }.count == 2, "the new pack sits beside the damaged one")
        #expect(try CLI.run(["relay", "verify-vault", "--data", relay.data]).status == 0, "the ledger names only the intact pack")
    }

    @Test func throttlingHoldsTheUploadRate() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s, replication: "lrs")
        try vault.start()
        let relay = try RelayHarness(s)
        try relay.start()
        let cfg = try relay.enroll("slow")
        for i in 0..<3 { s.write("slow/f\(i)", randomData(4_000_000)) }
        #expect(try CLI.run(["backup", "--config", cfg, s.sub("slow")]).status == 0)
        #expect(
            try CLI.run([
                "relay", "register", "--data", relay.data, "--vault-credentials", try vault.credentials("r"),
                "--passphrase-file", s.sub("p"), "--generate-passphrase", "--fast-kdf-for-tests",
            ]).status == 0)
        let started = Date()
        let r = try CLI.run(["relay", "forward", "--data", relay.data, "--now", "--limit-kbps", "16000"])
        let elapsed = Date().timeIntervalSince(started)
        #expect(r.status == 0, "\(r.stderr)")
        let bytes = vault.objectFiles().reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1)[.size] as? Int) ?? 0) }
        let rate = Double(bytes) / elapsed
        #expect(abs(rate - 2_000_000) / 2_000_000 < 0.10, "measured \(Int(rate)) B/s against a 2 MB/s limit")
    }

    @Test func aLostRelayIsRebuiltFromTheVaultAndTier2ServesWhatTheRelayLost() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        try vault.start()
        let (relay, _) = try setUp(s, vault: vault)
        let data = s.sub("relay-data")
        let cfg = s.sub("clerk-relay.toml")
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)

        // GRS: the second copy set holds every object too; replication can no longer change.
        let secondary = ((try? FileManager.default.subpathsOfDirectory(atPath: vault.data + "/secondary/containers")) ?? []).count
        let primary = ((try? FileManager.default.subpathsOfDirectory(atPath: vault.data + "/objects/containers")) ?? []).count
        #expect(secondary == primary && primary > 4)
        let change = try CLI.run(["vault", "set", "--data", vault.data, "--replication", "lrs"])
        #expect(change.status == 15)
        #expect(change.stderr.contains("cannot change once the vault holds backup items"))

        // Tier 2: the relay loses a pack; a restore still works, served from the vault.
        #expect(relay.stop() == 0)
        let packs = try FileManager.default.subpathsOfDirectory(atPath: relay.data + "/store/packs").filter { $0.hasSuffix(".pack") }
        let biggest = try #require(
            packs.max { a, b in
                ((try? FileManager.default.attributesOfItem(atPath: relay.data + "/store/packs/" + a)[.size] as? Int) ?? 0)
                    < ((try? FileManager.default.attributesOfItem(atPath: relay.data + "/store/packs/" + b)[.size] as? Int) ?? 0)
            })
        unlink(relay.data + "/store/packs/" + biggest)
        try relay.start()
        let tier2 = s.sub("tier2")
        let r = try CLI.run(["restore", "--config", cfg, "latest", "--target", tier2])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(treesDiffer(data, tier2 + data) == [])
        #expect(relay.log.contains("served from the vault"))
        // A relay registered with a vault stops cleanly on SIGTERM (it used to trap: its vault client was not
        // shut down when the forwarding service was cancelled).
        #expect(relay.stop() == 0, "\(relay.log)")

        // The whole relay is lost: a new one is rebuilt with a recovery credentials file and the passphrase.
        let recover = try vault.credentials("recover", recover: "relay")
        let fresh = s.sub("newrelay")
        let rebuild = try CLI.run(["relay", "rebuild", "--data", fresh, "--vault-credentials", recover, "--passphrase-file", s.sub("relay.pass")])
        #expect(rebuild.status == 0, "\(rebuild.stderr)")
        #expect(rebuild.stdout.contains("rebuilt 1 recovery points"))
        #expect(try CLI.run(["relay", "check", "--data", fresh, "--read-data"]).status == 0)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary)
        p.arguments = ["relay", "serve", "--data", fresh, "--listen", "127.0.0.1:0", "--port-file", s.sub("fresh.port")]
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { kill(p.processIdentifier, SIGTERM); p.waitUntilExit() }
        var port = ""
        for _ in 0..<3000 where port.isEmpty {
            port = ((try? String(contentsOfFile: s.sub("fresh.port"), encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            if port.isEmpty { usleep(10_000) }
        }
        let token = try CLI.run(["relay", "add-machine", "--data", fresh, "clerk-relay"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let fp = try CLI.run(["relay", "fingerprint", "--data", fresh]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let newCfg = s.sub("clerk-new.toml")
        #expect(
            try CLI.run(["enroll", "--relay", "https://127.0.0.1:\(port)", "--token", token, "--fingerprint", fp, "--config", newCfg]).status == 0)
        let out = s.sub("after-rebuild")
        let rr = try CLI.run(["restore", "--config", newCfg, "latest", "--target", out])
        #expect(rr.status == 0, "\(rr.stderr)")
        #expect(treesDiffer(data, out + data) == [])

        let wrong = try CLI.run([
            "relay", "rebuild", "--data", s.sub("third"), "--vault-credentials", try vault.credentials("r2", recover: "relay"),
            "--passphrase-file", s.sub("clerk-relay.toml"),
        ])
        #expect(wrong.status == 19, "a wrong passphrase is reported as such")
        #expect(wrong.stderr.contains("passphrase is wrong"))
    }

    @Test func deletesAreSoftAndAnImmutableVaultRefusesThem() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s, replication: "lrs")
        try vault.start()
        let (relay, _) = try setUp(s, vault: vault)
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)
        let link = try VaultLink.load(data: relay.data)
        let client = try VaultClient(url: link.url, certificatePEM: link.certificate, credential: link.credential, logger: Logger(label: "t"))
        let victim = try #require(try await client.list(prefix: "p/").first?.key)
        try await client.delete(victim)
        #expect(try await client.get(victim) == nil)
        let trash = (try? FileManager.default.subpathsOfDirectory(atPath: vault.data + "/objects/trash")) ?? []
        #expect(trash.contains { $0.hasSuffix(victim) }, "kept in soft delete")
        // An object over the vault's limit is refused as too large (413), not as a server failure.
        let huge = await #expect(throws: ForwarderError.self) { _ = try await client.put("k/zz/huge", [UInt8](repeating: 1, count: 65 << 20)) }
        #expect(huge?.message.contains("413") == true, "\(huge?.message ?? "")")
        await client.close()

        vault.stop()
        #expect(try CLI.run(["vault", "set", "--data", vault.data, "--immutable", "--lock"]).status == 0)
        let unlock = try CLI.run(["vault", "set", "--data", vault.data, "--mutable"])
        #expect(unlock.status == 15)
        #expect(unlock.stderr.contains("locked"))
        try vault.start()
        let link2 = try VaultLink.load(data: relay.data)
        let client2 = try VaultClient(
            url: "https://127.0.0.1:\(vault.port)", certificatePEM: link2.certificate, credential: link2.credential, logger: Logger(label: "t"))
        let another = try #require(try await client2.list(prefix: "k/").first?.key)
        let refused = await #expect(throws: ForwarderError.self) { try await client2.delete(another) }
        #expect(refused?.message.contains("immutable") == true)
        #expect(try await client2.get(another) != nil)
        await client2.close()
    }

    @Test func anInterruptedRegistrationResumesWithoutANewCredentialsFile() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s, replication: "lrs")
        try vault.start()
        let (relay, _) = try setUp(s, vault: vault)
        // As if the relay died after the vault accepted it but before it kept its key.
        unlink(relay.data + "/vault/master.key")
        let again = try CLI.run([
            "relay", "register", "--data", relay.data, "--vault-credentials", s.sub("relay.creds"),
            "--passphrase-file", s.sub("relay.pass"), "--fast-kdf-for-tests",
        ])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(FileManager.default.fileExists(atPath: relay.data + "/vault/master.key"))
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)
        #expect(try CLI.run(["relay", "verify-vault", "--data", relay.data]).status == 0)
    }
}

extension VaultEndToEndTests {
    /// A lost branch back at once: a catalog-only rebuild brings records and trees, the new relay restores
    /// straight away with the chunks coming from the vault, and a later run rehydrates the store, after which
    /// it checks clean with no vault.
    @Test func aCatalogOnlyRebuildRestoresAtOnceAndALaterRunRehydrates() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        try vault.start()
        let (relay, _) = try setUp(s, vault: vault)
        let data = s.sub("relay-data")
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)
        #expect(relay.stop() == 0)

        let fresh = s.sub("lazy")
        let recover = try vault.credentials("recover", recover: "relay")
        let rebuild = try CLI.run([
            "relay", "rebuild", "--data", fresh, "--vault-credentials", recover, "--passphrase-file", s.sub("relay.pass"), "--catalog-only",
        ])
        #expect(rebuild.status == 0, "\(rebuild.stderr)")
        #expect(rebuild.stdout.contains("catalog rebuilt: 1 recovery points"), "\(rebuild.stdout)")
        #expect(rebuild.stdout.contains("1 points wait for their chunks"), "\(rebuild.stdout)")
        let stats = json(try CLI.run(["store", "stats", "--store", fresh + "/store", "--json"]).stdout) as? [String: Any]
        #expect((stats?["rawBytes"] as? Int ?? .max) < 100_000, "trees and the record only: \(String(describing: stats))")

        let served = RelayHarness(existing: fresh, in: s, name: "lazy")
        try served.start()
        let token = try CLI.run(["relay", "add-machine", "--data", fresh, "clerk-relay"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let fp = try CLI.run(["relay", "fingerprint", "--data", fresh]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let cfg = s.sub("clerk-lazy.toml")
        #expect(
            try CLI.run(["enroll", "--relay", "https://127.0.0.1:\(served.port)", "--token", token, "--fingerprint", fp, "--config", cfg])
                .status == 0)
        let out = s.sub("at-once")
        let r = try CLI.run(["restore", "--config", cfg, "latest", "--target", out])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(treesDiffer(data, out + data) == [])
        #expect(served.log.contains("served from the vault"))
        #expect(served.stop() == 0)

        let again = try CLI.run(["relay", "rebuild", "--data", fresh, "--vault-credentials", recover, "--passphrase-file", s.sub("relay.pass")])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stdout.contains("1 points rehydrated"), "\(again.stdout)")
        #expect(try CLI.run(["relay", "check", "--data", fresh, "--read-data"]).status == 0)
        #expect(vault.stop() == 0)
    }
}

extension VaultEndToEndTests {
    /// A leaked recovery credentials file alone takes no container over: without the proof of the container's
    /// key (or with a wrong one) the vault refuses and the running relay keeps its credential; the real rebuild
    /// (passphrase given) is recorded as a proven takeover.
    @Test func aRecoveryFileWithoutTheContainersKeyIsRefused() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        try vault.start()
        let (relay, _) = try setUp(s, vault: vault)
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)
        let objects = vault.objectFiles()
        #expect(objects.contains { $0.hasSuffix("/verifier") }, "registration puts the container's verifier")

        let recoverPath = try vault.credentials("leaked", recover: "relay")
        let file = try VaultCredentialsFile.decode(Array(try Data(contentsOf: URL(fileURLWithPath: recoverPath))), path: recoverPath)
        let client = try VaultClient(url: file.url, certificatePEM: file.certificate, credential: nil, logger: Logger(label: "t"))
        for proof in [nil, String(repeating: "0", count: 64)] {
            let e = await #expect(throws: ForwarderError.self) {
                _ = try await client.register(secret: file.secret, relayName: "thief", proof: proof)
            }
            #expect(e?.code == .credentials && e?.message.contains("does not prove it holds the key") == true, "\(e?.message ?? "")")
        }
        await client.close()
        // The relay still forwards under its own credential; the file is unspent and the real rebuild takes it.
        s.write("relay-data/later.txt", Data("after the attempt".utf8))
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)
        #expect(relay.stop() == 0)
        let rebuild = try CLI.run([
            "relay", "rebuild", "--data", s.sub("rebuilt"), "--vault-credentials", recoverPath, "--passphrase-file", s.sub("relay.pass"),
        ])
        #expect(rebuild.status == 0, "\(rebuild.stderr)")
        let registry = try String(contentsOfFile: vault.data + "/registry.json", encoding: .utf8)
        #expect(registry.contains("\"proven\" : true") || registry.contains("\"proven\":true"), "\(registry)")
        #expect(vault.stop() == 0)
    }
}
