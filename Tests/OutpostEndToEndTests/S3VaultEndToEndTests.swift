import Foundation
import OutpostCephTestSupport
import OutpostObjects
import OutpostS3
import Testing

/// The vault on S3 (issue 14), through the real binary against a real Ceph RGW (Deploy/ceph.sh, one cluster for
/// the suite): `vault init --storage s3` with GRS over two buckets, a relay registered, a backup pushed, forwarded
/// into the buckets, and restored from the vault tier; `init`'s answers to a wrong key, an unreachable endpoint
/// and GRS without a second bucket.
@Suite(.ceph, .serialized, .timeLimit(.minutes(10))) struct S3VaultEndToEndTests {
    /// "read X from the relay, Y from the vault" of a restore's summary.
    func tiers(_ summary: String) -> (relay: String, vault: String)? {
        guard let r = summary.range(of: "read "), let mid = summary.range(of: " from the relay, ", range: r.upperBound..<summary.endIndex),
            let end = summary.range(of: " from the vault", range: mid.upperBound..<summary.endIndex)
        else { return nil }
        return (String(summary[r.upperBound..<mid.lowerBound]), String(summary[mid.upperBound..<end.lowerBound]))
    }

    @Test func aBackupForwardedToAVaultOnCephIsRestoredFromTheVaultTier() throws {
        let ceph = try CephCluster.required()
        let s = Scratch()
        let creds = s.sub("s3.credentials")
        try ceph.writeCredentialsFile(creds)
        let primary = CephCluster.freshBucket("vault"), secondary = CephCluster.freshBucket("vault2")
        let vault = try VaultHarness(
            s, replication: "grs",
            storage: [
                "--storage", "s3", "--s3-endpoint", ceph.endpoint, "--s3-bucket", primary, "--s3-credentials", creds,
                "--secondary-s3-endpoint", ceph.endpoint, "--secondary-s3-bucket", secondary,
            ])
        let settings = try #require(json((try? String(contentsOfFile: vault.data + "/vault.json", encoding: .utf8)) ?? "") as? [String: Any])
        #expect(settings["storage"] as? String == "s3")
        #expect((settings["s3"] as? [String: Any])?["bucket"] as? String == primary)
        #expect((settings["secondaryS3"] as? [String: Any])?["bucket"] as? String == secondary)
        try vault.start()
        let relay = try RelayHarness(s)
        try relay.start()
        let cfg = try relay.enroll("web1")
        s.write("data/ledger.bin", randomData(3_000_000))
        s.write("data/notes.txt", Data("kept off site, on Ceph\n".utf8))
        let backup = try CLI.run(["backup", "--config", cfg, "--json", s.sub("data")])
        #expect(backup.status == 0, "\(backup.stderr)")
        let id = try #require((json(backup.stdout) as? [String: Any])?["id"] as? String)

        try vault.register(relay, as: "branch", in: s)
        let fwd = try CLI.run(["relay", "forward", "--data", relay.data, "--now"])
        #expect(fwd.status == 0 && fwd.stdout.contains("forwarded 1 recovery points"), "\(fwd.stdout) \(fwd.stderr)")

        // The objects are in both buckets, none on the vault's disk.
        let p = try S3ObjectStore(location: S3Location(endpoint: ceph.endpoint, bucket: primary), credentials: ceph.credentials)
        let q = try S3ObjectStore(location: S3Location(endpoint: ceph.endpoint, bucket: secondary), credentials: ceph.credentials)
        let inPrimary = try p.list(prefix: "containers/")
        #expect(inPrimary.contains { $0.key.contains("/k/") } && inPrimary.contains { $0.key.contains("/p/") }, "\(inPrimary.map(\.key))")
        #expect(try q.list(prefix: "containers/") == inPrimary, "GRS: the second bucket holds the same objects")
        #expect(!FileManager.default.fileExists(atPath: vault.data + "/objects"), "nothing under VAULT/objects")
        #expect(!contains(vault.allBytes(), Array("kept off site, on Ceph".utf8)))

        // Restarted, the relay serves with its vault (it read no link at start).
        #expect(relay.stop() == 0)
        try relay.start()
        let offsite = try CLI.run(["restore", "--config", cfg, String(id.prefix(12)), "--tier", "vault", "--target", s.sub("v")])
        #expect(offsite.status == 0, "\(offsite.stdout) \(offsite.stderr)")
        #expect(tiers(offsite.stdout)?.relay == "0 B" && tiers(offsite.stdout)?.vault != "0 B", "\(offsite.stdout)")
        #expect(treesDiffer(s.sub("data"), s.sub("v") + s.sub("data")) == [])
        #expect(relay.stop() == 0)
        #expect(vault.stop() == 0)
    }

    @Test func initRefusesAWrongKeyAnUnreachableEndpointAndGRSWithoutASecondBucket() throws {
        let ceph = try CephCluster.required()
        let s = Scratch()
        let wrong = s.sub("wrong.credentials")
        try ceph.writeCredentialsFile(wrong, secret: "not-the-secret")
        func initVault(_ dir: String, _ options: [String]) throws -> CLI.Result {
            try CLI.run(["vault", "init", "--data", s.sub(dir), "--name", "v", "--url", "https://127.0.0.1:1", "--storage", "s3"] + options)
        }
        let refused = try initVault("a", ["--s3-endpoint", ceph.endpoint, "--s3-bucket", CephCluster.freshBucket(), "--s3-credentials", wrong])
        #expect(refused.status == 19, "\(refused.stderr)")
        #expect(refused.stderr.contains("check the access key and secret") && !refused.stderr.contains("not-the-secret"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.sub("a/vault.json")), "nothing written")

        let good = s.sub("good.credentials")
        try ceph.writeCredentialsFile(good)
        let unreachable = try initVault("b", ["--s3-endpoint", "http://127.0.0.1:1", "--s3-bucket", "vault-b", "--s3-credentials", good])
        #expect(unreachable.status == 20 && unreachable.stderr.contains("cannot reach the S3 endpoint http://127.0.0.1:1"), "\(unreachable.stderr)")

        let noSecond = try initVault(
            "c", ["--s3-endpoint", ceph.endpoint, "--s3-bucket", CephCluster.freshBucket(), "--s3-credentials", good, "--replication", "grs"])
        #expect(noSecond.status == 64 && noSecond.stderr.contains("--secondary-s3-bucket"), "\(noSecond.stderr)")

        let noKey = try CLI.run(
            [
                "vault", "init", "--data", s.sub("d"), "--name", "v", "--url", "https://127.0.0.1:1", "--storage", "s3", "--s3-endpoint",
                ceph.endpoint,
                "--s3-bucket", CephCluster.freshBucket(),
            ],
            environment: ["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""])
        #expect(noKey.status == 64 && noKey.stderr.contains("AWS_ACCESS_KEY_ID"), "\(noKey.stderr)")

        // From the environment, LRS by default: the bucket is created.
        let bucket = CephCluster.freshBucket()
        let fromEnv = try CLI.run(
            [
                "vault", "init", "--data", s.sub("e"), "--name", "v", "--url", "https://127.0.0.1:1", "--storage", "s3", "--s3-endpoint",
                ceph.endpoint,
                "--s3-bucket", bucket,
            ],
            environment: ["AWS_ACCESS_KEY_ID": ceph.credentials.accessKeyID, "AWS_SECRET_ACCESS_KEY": ceph.credentials.secretAccessKey])
        #expect(fromEnv.status == 0 && fromEnv.stderr.contains("(lrs) on S3 bucket \(bucket)"), "\(fromEnv.stderr)")
        #expect(try !S3ObjectStore(location: S3Location(endpoint: ceph.endpoint, bucket: bucket), credentials: ceph.credentials).ensureBucket())
    }
}
