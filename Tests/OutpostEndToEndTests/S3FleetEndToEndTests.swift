import Foundation
import OutpostCephTestSupport
import Testing

/// The fleet view with two `vault serve` nodes over one bucket (issue 13; docs/vault.md §2.5, §20): in
/// S3VaultEndToEndTests' suite, so on its Ceph cluster.
extension S3VaultEndToEndTests {
    @Test func aRelayForwardingThroughOneNodeIsSeenOnTheOtherNodesConsoleByAnAdministratorAddedOnce() throws {
        let ceph = try CephCluster.required()
        let s = Scratch()
        let creds = s.sub("s3.credentials")
        try ceph.writeCredentialsFile(creds)
        let a = try VaultHarness(
            s, name: "nodeA", replication: "lrs",
            storage: ["--storage", "s3", "--s3-endpoint", ceph.endpoint, "--s3-bucket", CephCluster.freshBucket("fleet"), "--s3-credentials", creds])
        try FileManager.default.copyItem(atPath: a.data, toPath: s.sub("nodeB"))
        let b = VaultHarness(existing: s.sub("nodeB"), in: s, name: "nodeB")
        try a.start()
        defer { a.kill9() }
        let portFile = s.sub("b-console-port")
        try b.start(extra: ["--console-listen", "127.0.0.1:0", "--console-port-file", portFile])
        defer { b.kill9() }
        let base = "https://127.0.0.1:\(try VaultConsoleEndToEndTests.port(portFile))"

        // The relay registers and forwards through A, which stores its status record in the bucket.
        let relay = try RelayHarness(s)
        try relay.start()
        defer { relay.kill9() }
        let cfg = try relay.enroll("web1")
        s.write("data/notes.txt", Data("seen from node B\n".utf8))
        #expect(try CLI.run(["backup", "--config", cfg, s.sub("data")]).status == 0)
        try a.register(relay, as: "branch", in: s)
        let fwd = try CLI.run(["relay", "forward", "--data", relay.data, "--now"])
        #expect(fwd.status == 0 && !fwd.stderr.contains("was not sent"), "\(fwd.stderr)")

        // Administrators added through A's directory log in on B; a link made through A is spent once on B.
        s.write("pw", Data("correct horse battery\n".utf8))
        #expect(try CLI.run(["vault", "admin", "add", "--data", a.data, "alice", "--password-file", s.sub("pw")]).status == 0)
        #expect(try CLI.run(["vault", "admin", "add", "--data", b.data, "alice", "--password-file", s.sub("pw")]).status == 15)
        let jar = s.sub("jar")
        #expect(try ConsoleEndToEndTests.curl(base + "/login", jar: jar, ["-d", "name=alice&password=correct+horse+battery"]).status == 303)
        let page = try ConsoleEndToEndTests.curl(base + "/", jar: jar)
        #expect(page.status == 200)
        let row = try #require(page.text.components(separatedBy: "<tr class=").first { $0.contains("<strong>branch</strong>") }, "\(page.text)")
        #expect(row.contains("<td>1 machine</td>") && row.contains("<td>0 s</td>"), "\(row)")
        let link = try CLI.run(["vault", "admin", "link", "--data", a.data, "alice"])
        let token = String(link.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "/login/").last ?? "")
        #expect(try ConsoleEndToEndTests.curl(base + "/login/\(token)", jar: s.sub("jar2")).status == 303)
        #expect(try ConsoleEndToEndTests.curl(base + "/login/\(token)", jar: s.sub("jar3")).status == 401)
    }
}
