import Foundation
import Testing

/// Retention through the real binary (issue 11): `backup --keep-until`, `relay retention` (set, show, refusals),
/// `relay prune` (dry run, JSON, text), on a relay with no vault and on one registered with a vault. No clock is
/// injected: `--relay-last` decides, so the points' ages do not matter.
@Suite(.serialized) struct RetentionEndToEndTests {
    /// A date `days` from today, local time, as `--keep-until` takes it.
    func day(_ days: Int) -> String {
        let d = Calendar.current.date(byAdding: .day, value: days, to: Date())!
        let c = Calendar.current.dateComponents([.year, .month, .day], from: d)
        return String(format: "%04d-%02d-%02d", c.year!, c.month!, c.day!)
    }

    /// `count` backups of one changing file; the one at `keepIndex` with `--keep-until` tomorrow. Returns the ids.
    func backups(_ s: Scratch, config: String, count: Int, keepIndex: Int? = nil) throws -> [String] {
        var ids: [String] = []
        for i in 0..<count {
            s.write("data/ledger.txt", Data("version \(i)\n".utf8) + randomData(20_000))
            var args = ["backup", "--config", config, "--json", s.sub("data")]
            if i == keepIndex { args += ["--keep-until", day(1)] }
            let r = try CLI.run(args)
            guard r.status == 0, let id = (json(r.stdout) as? [String: Any])?["id"] as? String else {
                throw HarnessError("backup \(i) failed: \(r.stderr)")
            }
            ids.append(id)
        }
        return ids
    }

    func points(_ config: String) throws -> [[String: Any]] {
        json(try CLI.run(["points", "--config", config, "--json"]).stdout) as? [[String: Any]] ?? []
    }

    /// Each point of the plan by id: (relay action, relay reasons, vault action).
    func verdicts(_ output: String) -> [String: (relay: String, reasons: [String], vault: String)] {
        let plan = (json(output) as? [String: Any])?["plan"] as? [String: Any]
        var out: [String: (relay: String, reasons: [String], vault: String)] = [:]
        for m in plan?["machines"] as? [[String: Any]] ?? [] {
            for p in m["points"] as? [[String: Any]] ?? [] {
                let relay = p["relay"] as? [String: Any], vault = p["vault"] as? [String: Any]
                out[p["id"] as? String ?? ""] = (
                    relay?["action"] as? String ?? "", relay?["reasons"] as? [String] ?? [], vault?["action"] as? String ?? ""
                )
            }
        }
        return out
    }

    @Test func retentionAndPruneOnARelayWithoutAVault() throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        try relay.start()
        let cfg = try relay.enroll("web1")
        let ids = try backups(s, config: cfg, count: 4, keepIndex: 1)

        // keep-until: refused in the past (before anything is read), recorded and listed otherwise.
        let past = try CLI.run(["backup", "--config", cfg, "--keep-until", "2020-01-01", s.sub("data")])
        #expect(past.status == 64 && past.stderr.contains("--keep-until 2020-01-01 is in the past"), "\(past.stderr)")
        let listed = try points(cfg)
        #expect(listed.count == 4)
        #expect(listed.filter { $0["keepUntil"] != nil }.map { $0["id"] as? String } == [ids[1]])
        #expect(try CLI.run(["points", "--config", cfg]).stdout.contains(day(1)), "the KEEP UNTIL column shows the day")

        // relay retention: refusals, each with its reason and exit code; nothing is set by them.
        let range = try CLI.run(["relay", "retention", "--data", relay.data, "--machine", "web1", "--vault-daily", "3"])
        #expect(range.status == 64 && range.stderr.contains("--vault-daily must be 7 to 9999 days, not 3"), "\(range.stderr)")
        let unknown = try CLI.run(["relay", "retention", "--data", relay.data, "--machine", "nobody", "--relay-last", "1"])
        #expect(unknown.status == 14 && unknown.stderr.contains("no machine named nobody"), "\(unknown.stderr)")
        let total = try CLI.run(["relay", "retention", "--data", relay.data, "--vault-daily", "9999", "--vault-yearly", "1"])
        #expect(total.status == 64 && total.stderr.contains("at most 9999"), "\(total.stderr)")

        // Set: the machine keeps its newest 1 on the relay; the relay's default keeps 7 days in the vault.
        #expect(try CLI.run(["relay", "retention", "--data", relay.data, "--machine", "web1", "--relay-last", "1"]).status == 0)
        #expect(try CLI.run(["relay", "retention", "--data", relay.data, "--vault-daily", "7"]).status == 0)
        let shown = json(try CLI.run(["relay", "retention", "--data", relay.data, "--json"]).stdout) as? [String: Any]
        let web1 = (shown?["machines"] as? [[String: Any]])?.first
        #expect((web1?["policy"] as? [String: Any])?["relayLast"] as? Int == 1)
        let sources = web1?["sources"] as? [String: String]
        #expect(sources?["relayLast"] == "machine" && sources?["vaultDaily"] == "relay default" && sources?["relayDays"] == "none")
        let text = try CLI.run(["relay", "retention", "--data", relay.data, "--machine", "web1"]).stdout
        #expect(text.contains("relay_last 1 (machine)") && text.contains("vault_daily 7 (relay default)"), "\(text)")

        // A dry run says what leaves and why, removes nothing, and counts what gc would free.
        let dry = try CLI.run(["relay", "prune", "--data", relay.data, "--dry-run", "--json"])
        #expect(dry.status == 0, "\(dry.stderr)")
        let v = verdicts(dry.stdout)
        #expect(v[ids[0]]?.relay == "leaves" && v[ids[0]]?.reasons == ["not among the newest 1 (relay_last)"])
        #expect(v[ids[1]]?.relay == "stays" && v[ids[1]]?.reasons.first?.hasPrefix("keep-until") == true)
        #expect(v[ids[2]]?.relay == "leaves" && v[ids[3]]?.relay == "stays")
        #expect(v[ids[0]]?.vault == "no vault")
        let report = json(dry.stdout) as? [String: Any]
        #expect((report?["plan"] as? [String: Any])?["vaultRegistered"] as? Bool == false)
        #expect(((report?["reclaimable"] as? [String: Any])?["blobs"] as? Int ?? 0) > 0)
        #expect(try points(cfg).count == 4, "a dry run removes nothing")

        // The prune itself, while the relay serves.
        let prune = try CLI.run(["relay", "prune", "--data", relay.data])
        #expect(prune.status == 0, "\(prune.stderr)")
        #expect(prune.stdout.contains("no vault: this relay forwards nowhere, so it prunes by the relay rules alone"), "\(prune.stdout)")
        #expect(prune.stdout.contains("relay: 2 recovery points left, 2 stay"), "\(prune.stdout)")
        #expect(prune.stdout.contains("outpost relay gc") && prune.stdout.contains("at least 24 h after the prune"), "\(prune.stdout)")
        #expect(!prune.stdout.contains("stop `relay serve`"), "gc runs while the relay serves: \(prune.stdout)")
        #expect(try points(cfg).compactMap { $0["id"] as? String } == [ids[1], ids[3]], "the keep-until point survives")

        // --gc runs gc right after, while the relay serves; the points pruned now keep their data for the grace.
        let both = try CLI.run(["relay", "prune", "--data", relay.data, "--gc", "--dry-run"])
        #expect(both.status == 64 && both.stderr.contains("give one of them"), "\(both.stderr)")
        let withGC = try CLI.run(["relay", "prune", "--data", relay.data, "--gc"])
        #expect(withGC.status == 0, "\(withGC.stdout) \(withGC.stderr)")
        #expect(withGC.stdout.contains("gc: removed "), "\(withGC.stdout)")
        #expect(withGC.stdout.contains("gc: 2 recovery points pruned or forgotten within the last 24 h keep their data"), "\(withGC.stdout)")
        let gcJSON = json(try CLI.run(["relay", "prune", "--data", relay.data, "--gc", "--json"]).stdout) as? [String: Any]
        #expect((gcJSON?["gcReport"] as? [String: Any])?["forgottenPointsKept"] as? Int == 2)

        // The space comes back with gc (the relay stopped); what is left restores and checks clean.
        #expect(relay.stop() == 0)
        let gc = try CLI.run(["store", "gc", "--store", relay.data + "/store", "--grace-hours", "0"])
        #expect(gc.status == 0, "\(gc.stdout) \(gc.stderr)")
        #expect(try CLI.run(["relay", "check", "--data", relay.data, "--read-data"]).status == 0)
        try relay.start()
        let out = s.sub("restored")
        let r = try CLI.run(["restore", "--config", cfg, String(ids[1].prefix(12)), "--target", out])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileManager.default.contents(atPath: out + s.sub("data") + "/ledger.txt")?.prefix(10) == Data("version 1\n".utf8))
        #expect(relay.stop() == 0)
    }

    /// A local store records keep-until too, and lists it.
    @Test func aLocalStoreRecordsKeepUntil() throws {
        let s = Scratch()
        let store = s.sub("store")
        #expect(try CLI.run(["store", "init", "--store", store]).status == 0)
        s.write("data/a.txt", Data("a".utf8))
        let b = try CLI.run(["backup", "--store", store, "--machine", "m1", "--keep-until", day(30), s.sub("data")])
        #expect(b.status == 0 && b.stderr.contains("is kept until"), "\(b.stderr)")
        let listed = json(try CLI.run(["points", "--store", store, "--json"]).stdout) as? [[String: Any]] ?? []
        #expect(listed.count == 1 && listed.first?["keepUntil"] is String, "\(listed)")
        #expect(try CLI.run(["points", "--store", store]).stdout.contains(day(30)))
        let bad = try CLI.run(["backup", "--store", store, "--machine", "m1", "--keep-until", "2026-02-30", s.sub("data")])
        #expect(bad.status == 64 && bad.stderr.contains("YYYY-MM-DD"), "\(bad.stderr)")
    }

    /// Registered with a vault: a point leaves the relay only once forwarded, unless --force; the vault tier is
    /// applied in the vault after the relay tier.
    @Test func pruneWaitsForForwardingUnlessForced() throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        try vault.start()
        let relay = try RelayHarness(s)
        // Started before registration, this relay runs no forwarder: what `relay forward` leaves stays pending.
        try relay.start()
        let cfg = try relay.enroll("web1")
        let forwarded = try backups(s, config: cfg, count: 2)
        try vault.register(relay, as: "branch", in: s)
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)
        let pending = try backups(s, config: cfg, count: 2)
        #expect(
            try CLI.run(["relay", "retention", "--data", relay.data, "--machine", "web1", "--relay-last", "1", "--vault-daily", "7"]).status == 0)

        let dry = try CLI.run(["relay", "prune", "--data", relay.data, "--dry-run", "--json"])
        let v = verdicts(dry.stdout)
        #expect(v[forwarded[0]]?.relay == "leaves" && v[forwarded[1]]?.relay == "leaves", "\(dry.stdout)")
        #expect(v[pending[0]]?.relay == "stays" && v[pending[0]]?.reasons.first?.hasPrefix("not forwarded yet (pending)") == true)
        #expect(v[pending[0]]?.vault == "not forwarded yet")
        #expect(v[forwarded[1]]?.vault == "keeps", "the newest point the vault holds")

        let prune = try CLI.run(["relay", "prune", "--data", relay.data])
        #expect(prune.status == 0, "\(prune.stderr)")
        #expect(prune.stdout.contains("(1 only until they are forwarded)"), "\(prune.stdout)")
        #expect(prune.stdout.contains("vault: 1 recovery points expired; 1 packs deleted"), "\(prune.stdout)")
        #expect(try points(cfg).compactMap { $0["id"] as? String } == pending)

        // Pruned from the relay, the forwarded point the vault keeps still counts for the vault tier; the one it
        // let go is gone from both.
        let again = verdicts(try CLI.run(["relay", "prune", "--data", relay.data, "--dry-run", "--json"]).stdout)
        #expect(again[forwarded[1]]?.relay == "pruned earlier" && again[forwarded[1]]?.vault == "keeps", "\(again)")
        #expect(again[forwarded[0]] == nil)

        let forced = try CLI.run(["relay", "prune", "--data", relay.data, "--force"])
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(try points(cfg).compactMap { $0["id"] as? String } == [pending[1]], "--force takes the point the vault lacks")
        #expect(relay.stop() == 0)
        #expect(vault.stop() == 0)
    }

    /// The vault tier applied in the vault: the expired points' entries and the packs only they needed go
    /// (into the vault's trash), the newest point of the day stays whole (verify-vault reads every blob the
    /// ledger places), `relay forwarding` shows the space, and an immutable vault refuses with exit 15.
    @Test func vaultRetentionDeletesWhatNoPointNeeds() throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        try vault.start()
        let relay = try RelayHarness(s)
        try relay.start()
        let cfg = try relay.enroll("web1")
        let ids = try backups(s, config: cfg, count: 3)
        try vault.register(relay, as: "branch", in: s)
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)
        let before = vault.objectFiles().count
        #expect(try CLI.run(["relay", "retention", "--data", relay.data, "--vault-daily", "7"]).status == 0)

        // A dry run names the space and deletes nothing.
        let dry = try CLI.run(["relay", "prune", "--data", relay.data, "--dry-run", "--json"])
        #expect(dry.status == 0, "\(dry.stderr)")
        let dryVault = (json(dry.stdout) as? [String: Any])?["vault"] as? [String: Any]
        #expect(dryVault?["pointsExpired"] as? Int == 2 && dryVault?["packsDeleted"] as? Int == 2, "\(dry.stdout)")
        #expect(vault.objectFiles().count == before)
        let space = try CLI.run(["relay", "forwarding", "--data", relay.data])
        #expect(space.status == 0 && space.stdout.contains("vault: 3 packs"), "\(space.stdout) \(space.stderr)")
        let needed = try CLI.run(["relay", "forwarding", "--data", relay.data, "--space"])
        // Nothing is expired yet (the dry run above deleted nothing): every pack is still needed.
        #expect(needed.status == 0 && needed.stdout.contains("3 packs") && needed.stdout.contains("0 B no longer needed"), "\(needed.stdout)")

        let prune = try CLI.run(["relay", "prune", "--data", relay.data, "--json"])
        #expect(prune.status == 0, "\(prune.stderr)")
        let done = (json(prune.stdout) as? [String: Any])?["vault"] as? [String: Any]
        #expect(done?["pointsExpired"] as? Int == 2 && done?["packsDeleted"] as? Int == 2, "\(prune.stdout)")
        #expect(vault.objectFiles().count == before - 4, "two p/ entries and two packs")
        let trash = (try? FileManager.default.subpathsOfDirectory(atPath: vault.data + "/objects/trash")) ?? []
        #expect(trash.filter { $0.contains("/p/") }.count == 2, "soft delete keeps them: \(trash)")
        let entries = json(try CLI.run(["relay", "forwarding", "--data", relay.data, "--json"]).stdout) as? [[String: Any]] ?? []
        #expect(entries.filter { $0["state"] as? String == "expired" }.compactMap { $0["point"] as? String } == [ids[0], ids[1]])
        let verify = try CLI.run(["relay", "verify-vault", "--data", relay.data])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)
        #expect(vault.objectFiles().count == before - 4, "expired points are not forwarded again")

        // Immutable: the next expiry is refused, with the reason, and nothing is recorded as deleted.
        _ = try backups(s, config: cfg, count: 1)
        #expect(try CLI.run(["relay", "forward", "--data", relay.data, "--now"]).status == 0)
        #expect(relay.stop() == 0)
        #expect(vault.stop() == 0)
        #expect(try CLI.run(["vault", "set", "--data", vault.data, "--immutable"]).status == 0)
        try vault.start()
        let refused = try CLI.run(["relay", "prune", "--data", relay.data])
        #expect(refused.status == 15 && refused.stderr.contains("immutable"), "\(refused.stdout) \(refused.stderr)")
        let after = json(try CLI.run(["relay", "forwarding", "--data", relay.data, "--json"]).stdout) as? [[String: Any]] ?? []
        #expect(after.filter { $0["state"] as? String == "expired" }.count == 2)
        let spaceJSON = json(try CLI.run(["relay", "forwarding", "--data", relay.data, "--json", "--space"]).stdout) as? [String: Any]
        #expect((spaceJSON?["vaultBytes"] as? Int ?? 0) > 0, "\(String(describing: spaceJSON))")
        #expect(vault.stop() == 0)
    }
}
