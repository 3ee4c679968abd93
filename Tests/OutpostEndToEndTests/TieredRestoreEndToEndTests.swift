import Foundation
import Testing

/// Tiered restore through the real binaries (issue 11): two points of one machine, forwarded; the older one
/// pruned from the relay and its data collected, so that only the vault holds it. `outpost points` and `outpost
/// relay points` say where each is; `outpost relay restore` brings the vault-only point back byte for byte from
/// the vault; `outpost restore --tier relay|vault` reads from the tier asked for and says so.
@Suite(.serialized) struct TieredRestoreEndToEndTests {
    /// "read X from the relay, Y from the vault" of a restore's summary: (X, Y) as printed.
    func tiers(_ summary: String) -> (relay: String, vault: String)? {
        guard let r = summary.range(of: "read "), let mid = summary.range(of: " from the relay, ", range: r.upperBound..<summary.endIndex),
            let end = summary.range(of: " from the vault", range: mid.upperBound..<summary.endIndex)
        else { return nil }
        return (String(summary[r.upperBound..<mid.lowerBound]), String(summary[mid.upperBound..<end.lowerBound]))
    }

    func tierByID(_ output: String) -> [String: String] {
        var out: [String: String] = [:]
        for p in json(output) as? [[String: Any]] ?? [] { out[p["id"] as? String ?? ""] = p["tier"] as? String ?? "-" }
        return out
    }

    @Test func aPointPrunedFromTheRelayIsListedAndRestoredFromTheVault() throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        try vault.start()
        let relay = try RelayHarness(s)
        try relay.start()
        let cfg = try relay.enroll("web1")
        // Point 1: a file that stays and a ledger; point 2: the ledger changed, and a new file.
        let stable = randomData(300_000), ledgerV1 = Data("version 1\n".utf8) + randomData(200_000)
        s.write("data/stable.bin", stable)
        s.write("data/ledger.txt", ledgerV1)
        func backup() throws -> String {
            let r = try CLI.run(["backup", "--config", cfg, "--json", s.sub("data")])
            guard r.status == 0, let id = (json(r.stdout) as? [String: Any])?["id"] as? String else { throw HarnessError("backup: \(r.stderr)") }
            return id
        }
        let old = try backup()
        let ledgerV2 = Data("version 2\n".utf8) + randomData(200_000)
        s.write("data/ledger.txt", ledgerV2)
        s.write("data/new.txt", Data("new in point 2\n".utf8))
        let new = try backup()

        // Registered and forwarded; the relay keeps its newest point only, so the old one leaves it.
        try vault.register(relay, as: "branch", in: s)
        let fwd = try CLI.run(["relay", "forward", "--data", relay.data, "--now"])
        #expect(fwd.status == 0 && fwd.stdout.contains("forwarded 2 recovery points"), "\(fwd.stdout) \(fwd.stderr)")
        #expect(try CLI.run(["relay", "retention", "--data", relay.data, "--machine", "web1", "--relay-last", "1"]).status == 0)
        let prune = try CLI.run(["relay", "prune", "--data", relay.data])
        #expect(prune.status == 0 && prune.stdout.contains("relay: 1 recovery points left"), "\(prune.stdout) \(prune.stderr)")
        // Its data goes (a gc with no grace, the relay stopped); restarted, the relay serves with its vault.
        #expect(relay.stop() == 0)
        let gc = try CLI.run(["store", "gc", "--store", relay.data + "/store", "--grace-hours", "0"])
        #expect(gc.status == 0, "\(gc.stdout) \(gc.stderr)")
        try relay.start()

        // Where each point is, on the client and on the relay host.
        let listed = try CLI.run(["points", "--config", cfg, "--json"])
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(tierByID(listed.stdout) == [old: "vault", new: "both"], "\(listed.stdout)")
        let table = try CLI.run(["points", "--config", cfg]).stdout
        #expect(table.contains("TIER") && table.contains(" vault ") && table.contains(" both "), "\(table)")
        let host = try CLI.run(["relay", "points", "--data", relay.data, "--machine", "web1", "--json"])
        #expect(host.status == 0 && tierByID(host.stdout) == [old: "vault", new: "both"], "\(host.stdout) \(host.stderr)")
        let hostTable = try CLI.run(["relay", "points", "--data", relay.data, "--machine", "web1"]).stdout
        #expect(hostTable.contains(String(old.prefix(8))) && hostTable.contains(" vault "), "\(hostTable)")
        let nobody = try CLI.run(["relay", "points", "--data", relay.data, "--machine", "nobody"])
        #expect(nobody.status == 14 && nobody.stderr.contains("no machine named nobody"), "\(nobody.stderr)")

        // The client restores the vault-only point through the relay: the chunks the relay still holds (the
        // stable file, shared with the newer point) come from it, only the old ledger crosses from the vault.
        let through = try CLI.run(["restore", "--config", cfg, String(old.prefix(12)), "--target", s.sub("client-old")])
        #expect(through.status == 0, "\(through.stdout) \(through.stderr)")
        let clientGot = s.sub("client-old") + s.sub("data")
        #expect(FileManager.default.contents(atPath: clientGot + "/stable.bin") == stable)
        #expect(FileManager.default.contents(atPath: clientGot + "/ledger.txt") == ledgerV1)
        let split = tiers(through.stdout)
        #expect(split != nil && split?.vault != "0 B" && split?.relay != "0 B", "\(through.stdout)")
        let vaultKB = Double(split?.vault.split(separator: " ").first ?? "") ?? .infinity
        #expect(split?.vault.hasSuffix("KiB") == true && vaultKB < 250, "about the old ledger (200 KB stored) only: \(through.stdout)")

        // On the relay host: the vault-only point, byte for byte, its data from the vault.
        let target = s.sub("from-vault")
        let restored = try CLI.run(["relay", "restore", "--data", relay.data, "--machine", "web1", String(old.prefix(12)), "--target", target])
        #expect(restored.status == 0, "\(restored.stdout) \(restored.stderr)")
        let got = target + s.sub("data")
        #expect(FileManager.default.contents(atPath: got + "/stable.bin") == stable)
        #expect(FileManager.default.contents(atPath: got + "/ledger.txt") == ledgerV1)
        #expect(!FileManager.default.fileExists(atPath: got + "/new.txt"))
        let fromVault = tiers(restored.stdout)
        #expect(fromVault != nil && fromVault?.vault != "0 B", "the old ledger and trees came from the vault: \(restored.stdout)")
        #expect(restored.stdout.contains("(tier vault)"), "\(restored.stdout)")
        // --tier relay never asks the vault: the old point's root tree is gone from the relay.
        let relayOnly = try CLI.run(["relay", "restore", "--data", relay.data, "--machine", "web1", old, "--tier", "relay", "--target", s.sub("x")])
        #expect(relayOnly.status != 0 && relayOnly.stderr.contains("--tier auto"), "\(relayOnly.stderr)")

        // The client: the newer point from the relay alone, then from the vault alone.
        let fromRelay = try CLI.run(["restore", "--config", cfg, String(new.prefix(12)), "--tier", "relay", "--target", s.sub("r")])
        #expect(fromRelay.status == 0, "\(fromRelay.stderr)")
        #expect(tiers(fromRelay.stdout)?.vault == "0 B" && tiers(fromRelay.stdout)?.relay != "0 B", "\(fromRelay.stdout)")
        #expect(treesDiffer(s.sub("data"), s.sub("r") + s.sub("data")) == [])
        let offsite = try CLI.run(["restore", "--config", cfg, String(new.prefix(12)), "--tier", "vault", "--target", s.sub("v")])
        #expect(offsite.status == 0, "\(offsite.stderr)")
        #expect(tiers(offsite.stdout)?.relay == "0 B" && tiers(offsite.stdout)?.vault != "0 B", "\(offsite.stdout)")
        #expect(treesDiffer(s.sub("data"), s.sub("v") + s.sub("data")) == [])
        #expect(relay.stop() == 0)
        #expect(vault.stop() == 0)
    }
}
