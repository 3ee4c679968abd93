import Foundation
import GRDB
import Testing

/// The relay's jobs through the binary (issue 12): a backup committed, a forward and a prune each leave a job
/// with its times, state and totals; filters and refusals; a job a killed relay left running is failed when the
/// relay starts again.
@Suite struct JobsEndToEndTests {
    func jobs(_ data: String, _ extra: [String] = []) throws -> [[String: Any]] {
        json(try CLI.run(["relay", "jobs", "--data", data, "--json"] + extra).stdout) as? [[String: Any]] ?? []
    }

    @Test func backupsForwardsAndPrunesAreJobs() throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        try vault.start()
        let relay = try RelayHarness(s)
        try relay.start()
        let cfg = try relay.enroll("web1")
        s.write("data/a.txt", Data("alpha".utf8) + randomData(50_000))
        #expect(try CLI.run(["backup", "--config", cfg, s.sub("data")]).status == 0)
        let backups = try jobs(relay.data, ["--machine", "web1"])
        #expect(backups.count == 1, "\(backups)")
        #expect(backups.first?["kind"] as? String == "backup" && backups.first?["state"] as? String == "completed")
        #expect((backups.first?["bytes"] as? Int ?? 0) >= 50_000 && backups.first?["files"] as? Int == 1)

        try vault.register(relay, as: "branch", in: s)
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)
        #expect(try CLI.run(["relay", "prune", "--data", relay.data]).status == 0)
        let all = try jobs(relay.data)
        #expect(all.compactMap { $0["kind"] as? String } == ["prune", "forward", "backup"], "newest first: \(all)")
        #expect(all.allSatisfy { $0["state"] as? String == "completed" && $0["endedAt"] != nil }, "\(all)")
        let forwardID = try #require(all[1]["id"] as? Int)
        let one = try CLI.run(["relay", "job", "--data", relay.data, "\(forwardID)"])
        #expect(one.status == 0 && one.stdout.contains("forward") && one.stdout.contains("1 recovery points forwarded"), "\(one.stdout)")
        #expect(try jobs(relay.data, ["--state", "failed"]).isEmpty)
        // Commands on the relay host are jobs too: a check, a vault verification.
        #expect(try CLI.run(["relay", "check", "--data", relay.data]).status == 0)
        #expect(try CLI.run(["relay", "verify-vault", "--data", relay.data]).status == 0)
        #expect(try jobs(relay.data).prefix(2).compactMap { $0["kind"] as? String } == ["verify", "check"])
        let bad = try CLI.run(["relay", "jobs", "--data", relay.data, "--state", "exploded"])
        #expect(bad.status == 64 && bad.stderr.contains("--state must be one of"), "\(bad.stderr)")
        let missing = try CLI.run(["relay", "job", "--data", relay.data, "9999"])
        #expect(missing.status == 14, "\(missing.stderr)")

        // A job left running by a relay that died is failed when the relay starts again.
        #expect(relay.stop() == 0)
        var config = Configuration()
        config.busyMode = .timeout(30)
        let db = try DatabaseQueue(path: relay.data + "/store/index.sqlite", configuration: config)
        try db.write { db in
            try db.execute(
                sql: "INSERT INTO jobs (kind, state, started_at) VALUES ('gc', 'running', ?)", arguments: [Date().timeIntervalSince1970 - 60])
        }
        try relay.start()
        let failed = try jobs(relay.data, ["--state", "failed"])
        #expect(failed.count == 1 && (failed.first?["detail"] as? String)?.contains("ended before it did") == true, "\(failed)")
        #expect(relay.stop() == 0)
        #expect(vault.stop() == 0)
    }
}
