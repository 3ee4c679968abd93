import Foundation
import OutpostCephTestSupport
import OutpostObjects
import OutpostS3
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Two `vault serve` nodes over one bucket on a real Ceph RGW (docs/vault.md §2.5): in S3VaultEndToEndTests' suite,
/// so on its cluster. The second node's data directory is a copy of the first's (vault.json, tls/): relays pin
/// one certificate whichever node they reach.
extension S3VaultEndToEndTests {
    /// Vault node A (`vault init --storage s3`, LRS on a fresh bucket) and node B over a copy of its directory.
    func twoNodes(_ s: Scratch, _ ceph: CephCluster) throws -> (VaultHarness, VaultHarness) {
        let creds = s.sub("s3.credentials")
        try ceph.writeCredentialsFile(creds)
        let a = try VaultHarness(
            s, name: "nodeA", replication: "lrs",
            storage: ["--storage", "s3", "--s3-endpoint", ceph.endpoint, "--s3-bucket", CephCluster.freshBucket("nodes"), "--s3-credentials", creds])
        try FileManager.default.copyItem(atPath: a.data, toPath: s.sub("nodeB"))
        let b = VaultHarness(existing: s.sub("nodeB"), in: s, name: "nodeB")
        try a.start()
        try b.start()
        return (a, b)
    }

    /// Points the relay's vault link at another node (what an operator's DNS or load balancer does).
    func pointLink(_ relay: RelayHarness, at node: VaultHarness) throws {
        let path = relay.data + "/vault/link.json"
        var link = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        link["url"] = "https://127.0.0.1:\(node.port)"
        try JSONSerialization.data(withJSONObject: link, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: path))
    }

    @Test func aRelayRegisteredAndForwardingThroughOneNodeRestoresThroughTheOther() throws {
        let ceph = try CephCluster.required()
        let s = Scratch()
        let (a, b) = try twoNodes(s, ceph)
        let relay = try RelayHarness(s)
        try relay.start()
        let cfg = try relay.enroll("web1")
        s.write("data/ledger.bin", randomData(2_000_000))
        s.write("data/notes.txt", Data("served by two vault nodes\n".utf8))
        let backup = try CLI.run(["backup", "--config", cfg, "--json", s.sub("data")])
        #expect(backup.status == 0, "\(backup.stderr)")
        let id = try #require((json(backup.stdout) as? [String: Any])?["id"] as? String)

        // Registered and forwarded through A; B's administration commands read the same registry.
        try a.register(relay, as: "branch", in: s)
        let fwd = try CLI.run(["relay", "forward", "--data", relay.data, "--now"])
        #expect(fwd.status == 0 && fwd.stdout.contains("forwarded 1 recovery points"), "\(fwd.stdout) \(fwd.stderr)")
        let listed = try CLI.run(["vault", "relays", "--data", b.data])
        #expect(listed.status == 0 && listed.stdout.contains("  branch  registered "), "\(listed.stdout) \(listed.stderr)")
        #expect(
            !FileManager.default.fileExists(atPath: a.data + "/registry.json") && !FileManager.default.fileExists(atPath: b.data + "/registry.json"))

        // A is gone; the relay, pointed at B, restores from the vault tier through B.
        #expect(a.stop() == 0)
        #expect(relay.stop() == 0)
        try pointLink(relay, at: b)
        try relay.start()
        let offsite = try CLI.run(["restore", "--config", cfg, String(id.prefix(12)), "--tier", "vault", "--target", s.sub("v")])
        #expect(offsite.status == 0, "\(offsite.stdout) \(offsite.stderr)")
        #expect(tiers(offsite.stdout)?.relay == "0 B" && tiers(offsite.stdout)?.vault != "0 B", "\(offsite.stdout)")
        #expect(treesDiffer(s.sub("data"), s.sub("v") + s.sub("data")) == [])
        // And it forwards through B (the relay's own forwarder may take the point first): B knows the credential
        // A issued, and the bucket holds both points' entries.
        s.write("data/later.txt", Data("after the switch\n".utf8))
        #expect(try CLI.run(["backup", "--config", cfg, s.sub("data")]).status == 0)
        let again = try CLI.run(["relay", "forward", "--data", relay.data, "--now"])
        #expect(again.status == 0 && again.stdout.contains("backlog 0"), "\(again.stdout) \(again.stderr)")
        let bucket = try S3ObjectStore(location: S3Location(endpoint: ceph.endpoint, bucket: try bucket(of: b)), credentials: ceph.credentials)
        #expect(try bucket.list(prefix: "containers/").filter { $0.key.contains("/p/") }.count == 2)

        // The rules are the vault's, not a node's (§2.5): locked through A's copy of vault.json, B refuses to turn
        // immutability off although its own vault.json never heard of the lock, and applies A's relay limit.
        #expect(try CLI.run(["vault", "set", "--data", a.data, "--lock", "--max-relays", "7"]).status == 0)
        let unlock = try CLI.run(["vault", "set", "--data", b.data, "--mutable"])
        #expect(unlock.status == 15 && unlock.stderr.contains("locked"), "\(unlock.stderr)")
        let shown = try CLI.run(["vault", "set", "--data", b.data])
        #expect(shown.stderr.contains("immutable true (locked)") && shown.stderr.contains("at most 7 relays"), "\(shown.stderr)")
        #expect(relay.stop() == 0)
        #expect(b.stop() == 0)
    }

    /// `relay register` started in the background, its output in files.
    func launchRegister(_ relay: RelayHarness, creds: String, name: String, in s: Scratch) throws -> (Process, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary)
        p.arguments = [
            "relay", "register", "--data", relay.data, "--vault-credentials", creds, "--passphrase-file", s.sub("\(name).pass"),
            "--generate-passphrase", "--name", name, "--fast-kdf-for-tests",
        ]
        let err = s.sub("\(name).register.err")
        FileManager.default.createFile(atPath: err, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: err)
        p.standardOutput = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return (p, err)
    }

    @Test func twoRelaysRacingThroughTwoNodesWithOneCredentialsFileRegisterOnce() throws {
        let ceph = try CephCluster.required()
        let s = Scratch()
        let (a, b) = try twoNodes(s, ceph)
        for round in 0..<3 {
            // One file, issued through B's directory, sent to A by one relay and to B by the other at once.
            let toA = try a.credentials("race\(round)")
            var file = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: toA))) as? [String: Any])
            file["url"] = "https://127.0.0.1:\(b.port)"
            let toB = s.sub("race\(round)-b.creds")
            try JSONSerialization.data(withJSONObject: file, options: [.sortedKeys]).write(to: URL(fileURLWithPath: toB))
            chmod(toB, 0o600)
            let r1 = try RelayHarness(s, name: "r\(round)a"), r2 = try RelayHarness(s, name: "r\(round)b")
            let p1 = try launchRegister(r1, creds: toA, name: "east\(round)", in: s)
            let p2 = try launchRegister(r2, creds: toB, name: "west\(round)", in: s)
            p1.0.waitUntilExit()
            p2.0.waitUntilExit()
            let results = [
                (p1.0.terminationStatus, try String(contentsOfFile: p1.err, encoding: .utf8)),
                (p2.0.terminationStatus, try String(contentsOfFile: p2.err, encoding: .utf8)),
            ]
            #expect(results.filter { $0.0 == 0 }.count == 1, "round \(round): \(results)")
            let loser = results.first { $0.0 != 0 }
            #expect(loser?.0 == 19 && loser?.1.contains("this vault credentials file was already used") == true, "round \(round): \(results)")
        }
        // One relay per round, whichever node is asked.
        for node in [a, b] {
            let listed = try CLI.run(["vault", "relays", "--data", node.data])
            #expect(listed.stdout.split(separator: "\n").count == 3, "\(listed.stdout)")
        }
        let log = try S3ObjectStore(
            location: S3Location(endpoint: ceph.endpoint, bucket: try bucket(of: a)), credentials: ceph.credentials
        ).list(prefix: "meta/registry/")
        #expect(log.map(\.key) == (1...6).map { "meta/registry/000000000\($0).json" }, "an issue and a registration per round")
        #expect(a.stop() == 0)
        #expect(b.stop() == 0)
    }

    func bucket(of vault: VaultHarness) throws -> String {
        let settings = try #require(json(try String(contentsOfFile: vault.data + "/vault.json", encoding: .utf8)) as? [String: Any])
        return try #require((settings["s3"] as? [String: Any])?["bucket"] as? String)
    }
}
