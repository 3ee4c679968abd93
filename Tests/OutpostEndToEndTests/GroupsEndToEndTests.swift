import Foundation
import Testing

/// Protection groups through the binary (issue 12): create, show, list, edit, delete; every mistake refused with
/// its reason and exit code, changing nothing; a group's retention reaches its machines.
@Suite struct GroupsEndToEndTests {
    func groups(_ data: String) throws -> [[String: Any]] {
        json(try CLI.run(["relay", "group", "list", "--data", data, "--json"]).stdout) as? [[String: Any]] ?? []
    }

    @Test func groupsAreManagedAndMistakesChangeNothing() throws {
        let s = Scratch()
        let data = s.sub("relay")
        #expect(try CLI.run(["relay", "init", "--data", data]).status == 0)
        for m in ["web1", "web2"] { #expect(try CLI.run(["relay", "add-machine", "--data", data, m]).status == 0) }

        let made = try CLI.run([
            "relay", "group", "create", "--data", data, "files", "--machine", "web1", "--path", "/srv", "--path", "/etc",
            "--exclude", "*.tmp", "--schedule", "Mon-Fri 22:30", "--vault-daily", "30",
        ])
        #expect(made.status == 0, "\(made.stderr)")
        #expect(made.stdout.contains("group files: mon-fri 22:30"), "\(made.stdout)")

        // Each mistake: its reason and exit code, and nothing changed.
        let refusals: [([String], Int32, String)] = [
            (["create", "g2", "--machine", "nobody", "--path", "/x", "--schedule", "daily 01:00"], 14, "no machine named nobody"),
            (["create", "g2", "--machine", "web1", "--path", "/x", "--schedule", "daily 01:00"], 15, "machine web1 is in protection group files"),
            (["create", "g2", "--machine", "web2", "--path", "/x", "--schedule", "daily 25:00"], 64, "not a time of day"),
            (["create", "g2", "--machine", "web2", "--path", "/x", "--schedule", "daily 1:00,2:00,3:00,4:00"], 64, "at most 3"),
            (["create", "g2", "--machine", "web2", "--path", "x", "--schedule", "daily 01:00"], 64, "not absolute"),
            (["create", "g2", "--machine", "web2", "--path", "/x", "--schedule", "daily 01:00", "--vault-daily", "3"], 64, "7 to 9999"),
            (["create", "files", "--machine", "web2", "--path", "/x", "--schedule", "daily 01:00"], 15, "exists"),
            (["create", "g2", "--machine", "web2", "--path", "/x"], 64, "needs a --schedule"),
            (["edit", "nothere", "--schedule", "daily 01:00"], 14, "no protection group is named nothere"),
        ]
        for (args, code, reason) in refusals {
            let r = try CLI.run(["relay", "group"] + args.prefix(1) + ["--data", data] + args.dropFirst())
            #expect(r.status == code && r.stderr.contains(reason), "\(args): \(r.status) \(r.stderr)")
        }
        let listed = try groups(data)
        #expect(listed.count == 1 && listed.first?["machines"] as? [String] == ["web1"], "\(listed)")
        #expect(listed.first?["paths"] as? [String] == ["/srv", "/etc"] && listed.first?["excludes"] as? [String] == ["*.tmp"])

        // The group's retention reaches its machine, below the machine's own values.
        let shown = try CLI.run(["relay", "retention", "--data", data, "--machine", "web1"]).stdout
        #expect(shown.contains("vault_daily 30 (group)"), "\(shown)")

        // Edit: the members and the schedule replaced; retention values added over the group's.
        let edited = try CLI.run([
            "relay", "group", "edit", "--data", data, "files", "--machine", "web1", "--machine", "web2", "--schedule", "every 4h", "--relay-last",
            "3",
        ])
        #expect(edited.status == 0, "\(edited.stderr)")
        let one = json(try CLI.run(["relay", "group", "show", "--data", data, "files", "--json"]).stdout) as? [String: Any]
        #expect(one?["machines"] as? [String] == ["web1", "web2"] && one?["schedule"] as? String == "every 4h", "\(String(describing: one))")
        let retention = one?["retention"] as? [String: Any]
        #expect(retention?["vaultDaily"] as? Int == 30 && retention?["relayLast"] as? Int == 3, "\(String(describing: retention))")

        // Delete: the machines belong to no group; the group's retention no longer applies.
        #expect(try CLI.run(["relay", "group", "delete", "--data", data, "files"]).status == 0)
        #expect(try groups(data).isEmpty)
        #expect(!(try CLI.run(["relay", "retention", "--data", data, "--machine", "web1"]).stdout.contains("(group)")))
        let again = try CLI.run(["relay", "group", "delete", "--data", data, "files"])
        #expect(again.status == 14, "\(again.stderr)")
    }
}
