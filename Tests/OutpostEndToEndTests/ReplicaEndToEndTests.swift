import Foundation
import Testing

/// GRS with a secondary copy set that stops taking writes (docs/vault.md §3.1), through the real binary: the relay
/// forwards anyway, `vault replica` reports what the secondary lacks, and catch-up copies it when it is back.
@Suite(.serialized) struct ReplicaEndToEndTests {
    func objectCount(_ dir: String) -> Int {
        ((try? FileManager.default.subpathsOfDirectory(atPath: dir)) ?? []).filter { path in
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: dir + "/" + path, isDirectory: &isDir) && !isDir.boolValue
        }.count
    }

    @Test func aSecondaryThatStopsTakingWritesFallsBehindVisiblyAndCatchesUp() async throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        try vault.start()
        defer { vault.stop() }
        let (relay, _) = try VaultEndToEndTests().setUp(s, vault: vault)
        defer { relay.stop() }
        let secondary = vault.data + "/secondary/containers"
        let before = try CLI.run(["vault", "replica", "--data", vault.data, "--json"])
        #expect((json(before.stdout) as? [String: Any])?["objects"] as? Int == 0, "\(before.stdout) \(before.stderr)")

        let primaryBefore = objectCount(vault.data + "/objects/containers")
        // The secondary cannot take writes: its containers directory is a file now (root ignores permissions).
        try FileManager.default.moveItem(atPath: secondary, toPath: secondary + ".away")
        FileManager.default.createFile(atPath: secondary, contents: Data("not a directory".utf8))
        let fwd = try CLI.run(["relay", "forward", "--data", relay.data, "--now"])
        #expect(fwd.status == 0, "the primary takes the forward: \(fwd.stderr)")
        #expect(fwd.stdout.contains("forwarded 1 recovery points"))

        let behind = try CLI.run(["vault", "replica", "--data", vault.data, "--json"])
        #expect(behind.status == 0, "\(behind.stderr)")
        let report = json(behind.stdout) as? [String: Any]
        let pending = report?["objects"] as? Int ?? 0
        let stored = objectCount(vault.data + "/objects/containers") - primaryBefore
        // At least every object the forward stored; also any it put again (a copy the secondary never got).
        #expect(stored > 0 && pending >= stored, "every object the forward stored waits for the secondary: \(stored) stored, \(behind.stdout)")
        #expect(report?["oldest"] as? String != nil)
        let text = try CLI.run(["vault", "replica", "--data", vault.data])
        #expect(text.stdout.contains("\(pending) writes pending"), "\(text.stdout)")
        #expect(text.stdout.contains("put containers/"), "the pending writes are named: \(text.stdout)")

        let stillDown = try CLI.run(["vault", "replica", "--data", vault.data, "--catch-up", "--json"])
        #expect((json(stillDown.stdout) as? [String: Any])?["objects"] as? Int == pending, "nothing is dropped while it is down")

        try FileManager.default.removeItem(atPath: secondary)
        try FileManager.default.moveItem(atPath: secondary + ".away", toPath: secondary)
        let caughtUp = try CLI.run(["vault", "replica", "--data", vault.data, "--catch-up", "--json"])
        #expect((json(caughtUp.stdout) as? [String: Any])?["objects"] as? Int == 0, "\(caughtUp.stdout) \(caughtUp.stderr)")
        #expect(objectCount(secondary) == objectCount(vault.data + "/objects/containers"))
        #expect(objectCount(vault.data + "/objects/meta/replica-pending") == 0)

        // With the primary's copy of the forward gone, the vault serves it from the secondary.
        try FileManager.default.removeItem(atPath: vault.data + "/objects/containers")
        #expect(try CLI.run(["relay", "verify-vault", "--data", relay.data]).status == 0)
    }

    @Test func anLRSVaultHasNoReplicaToReport() throws {
        let s = Scratch()
        let vault = try VaultHarness(s, replication: "lrs")
        let r = try CLI.run(["vault", "replica", "--data", vault.data])
        #expect(r.status == 15)
        #expect(r.stderr.contains("is LRS"), "\(r.stderr)")
    }
}
