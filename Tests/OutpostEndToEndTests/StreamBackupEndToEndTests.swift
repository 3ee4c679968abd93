import Foundation
import Testing

/// `outpost backup --stdin --stdin-name NAME` (issue 12): a stream stored as one file, restorable like any, to a
/// local store and through a relay; a second identical stream adds nothing; mistakes refused before reading.
@Suite struct StreamBackupEndToEndTests {
    /// Runs outpost with standard input read from `input`.
    func piped(_ input: String, _ args: [String]) throws -> CLI.Result {
        try CLI.run(args, prefix: ["/bin/sh", "-c", "exec \"$0\" \"$@\" < '\(input)'"])
    }

    @Test func aStreamIsStoredAsAFileAndRestored() throws {
        let s = Scratch()
        let dump = Data("-- a database dump\n".utf8) + randomData(3_000_000) + Data("-- end\n".utf8)
        s.write("dump.sql", dump)
        let input = s.sub("dump.sql")

        let store = s.sub("store")
        #expect(try CLI.run(["store", "init", "--store", store]).status == 0)
        let local = try piped(input, ["backup", "--store", store, "--machine", "db1", "--stdin", "--stdin-name", "db.sql", "--json"])
        #expect(local.status == 0, "\(local.stderr)")
        #expect(try CLI.run(["restore", "--store", store, "--machine", "db1", "latest", "--target", s.sub("out")]).status == 0)
        #expect(FileManager.default.contents(atPath: s.sub("out") + "/db.sql") == dump)

        let relay = try RelayHarness(s)
        try relay.start()
        let cfg = try relay.enroll("db1")
        let first = try piped(input, ["backup", "--config", cfg, "--stdin", "--stdin-name", "db.sql", "--json"])
        #expect(first.status == 0, "\(first.stderr)")
        let again = try piped(input, ["backup", "--config", cfg, "--stdin", "--stdin-name", "db.sql", "--json"])
        let summary = (json(again.stdout) as? [String: Any])?["summary"] as? [String: Any]
        #expect(summary?["bytesAddedStored"] as? Int == 0 && summary?["bytesRead"] as? Int == dump.count, "\(again.stdout)")
        let restored = try CLI.run(["restore", "--config", cfg, "latest", "/db.sql", "--target", s.sub("from-relay")])
        #expect(restored.status == 0, "\(restored.stderr)")
        #expect(FileManager.default.contents(atPath: s.sub("from-relay") + "/db.sql") == dump)
        #expect(relay.stop() == 0)

        for (args, reason) in [
            (["--stdin", "--stdin-name", "x.sql", s.sub("data")], "leave out the paths"),
            (["--stdin"], "needs --stdin-name"),
            (["--stdin", "--stdin-name", "a/b"], "must be a file name"),
            (["--stdin-name", "x.sql", s.sub("data")], "goes with --stdin"),
        ] {
            let r = try piped(input, ["backup", "--store", store, "--machine", "db1"] + args)
            #expect(r.status == 64 && r.stderr.contains(reason), "\(args): \(r.stderr)")
        }
    }
}
