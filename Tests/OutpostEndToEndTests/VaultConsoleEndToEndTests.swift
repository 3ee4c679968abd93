import Foundation
import OutpostForwarder
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The vault's fleet view (issue 13) through the real binaries: relays send their status record when they
/// forward, the vault keeps it in its object store, and its administrators see every relay on the console.
@Suite(.serialized, .timeLimit(.minutes(5))) struct VaultConsoleEndToEndTests {
    static let fileName = "quarterly-payroll-ZX81.xlsx"

    /// A started relay with `machines` enrolled, each with one backup of a file named `fileName`; registered with
    /// `vault` as `name` and forwarded once with `relay forward` (which sends the status record).
    func relay(_ s: Scratch, vault: VaultHarness, name: String, machines: [String]) throws -> RelayHarness {
        let relay = try RelayHarness(s, name: name)
        try relay.start()
        for m in machines {
            let config = try relay.enroll(m)
            s.write("\(m)/\(Self.fileName)", Data("salaries of \(m)\n".utf8))
            let b = try CLI.run(["backup", "--config", config, s.sub(m)])
            guard b.status == 0 else { throw HarnessError("backup of \(m) failed: \(b.stderr)") }
        }
        try vault.register(relay, as: name, in: s)
        let f = try CLI.run(["relay", "forward", "--data", relay.data, "--now"])
        guard f.status == 0 else { throw HarnessError("forward of \(name) failed: \(f.stderr)") }
        #expect(!f.stderr.contains("was not sent"), "\(f.stderr)")
        return relay
    }

    @Test func anAdministratorSeesEveryRelayWithItsMachinesAndLagAndNothingElseOpensIt() throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        let portFile = s.sub("vault-console-port")
        try vault.start(extra: ["--console-listen", "127.0.0.1:0", "--console-port-file", portFile])
        defer { vault.kill9() }
        let port = try Self.port(portFile)
        let base = "https://127.0.0.1:\(port)"
        let east = try relay(s, vault: vault, name: "east", machines: ["pc-east-1", "pc-east-2"])
        defer { east.kill9() }
        let west = try relay(s, vault: vault, name: "west", machines: ["pc-west-1"])
        defer { west.kill9() }

        s.write("pw", Data("correct horse battery\n".utf8))
        #expect(try CLI.run(["vault", "admin", "add", "--data", vault.data, "alice", "--password-file", s.sub("pw")]).status == 0)
        #expect(try CLI.run(["vault", "admin", "add", "--data", vault.data, "alice", "--password-file", s.sub("pw")]).status == 15)
        s.write("short", Data("tiny\n".utf8))
        #expect(try CLI.run(["vault", "admin", "add", "--data", vault.data, "carol", "--password-file", s.sub("short")]).status == 64)
        #expect(try CLI.run(["vault", "admin", "add", "--data", vault.data, "bob", "--login-link"]).status == 0)
        let listed = try CLI.run(["vault", "admin", "list", "--data", vault.data])
        #expect(listed.stdout.contains("alice  password") && listed.stdout.contains("bob  link only") && !listed.stdout.contains("carol"))

        // No session: the page sends to the login form; a relay's credential opens nothing.
        let jar = s.sub("jar")
        let anonymous = try ConsoleEndToEndTests.curl(base + "/", jar: jar)
        #expect(anonymous.status == 303 && anonymous.headers.lowercased().contains("location: /login"), "\(anonymous.headers)")
        let credential = try VaultLink.load(data: east.data).credential
        #expect(try ConsoleEndToEndTests.curl(base + "/", jar: s.sub("jar-relay"), ["-H", "Authorization: Bearer \(credential)"]).status == 303)
        let relayAsPassword = try ConsoleEndToEndTests.curl(
            base + "/login", jar: s.sub("jar-relay"), ["--data-urlencode", "name=east", "--data-urlencode", "password=\(credential)"])
        #expect(relayAsPassword.status == 401)
        #expect(try ConsoleEndToEndTests.curl(base + "/logout", jar: jar, ["-d", "csrf=x"]).status == 401)

        // Logged in: both relays, their machine counts and their lag (nothing waits: 0 s).
        #expect(try ConsoleEndToEndTests.curl(base + "/login", jar: jar, ["-d", "name=alice&password=nope"]).status == 401)
        #expect(try ConsoleEndToEndTests.curl(base + "/login", jar: jar, ["-d", "name=alice&password=correct+horse+battery"]).status == 303)
        let page = try ConsoleEndToEndTests.curl(base + "/", jar: jar)
        #expect(page.status == 200)
        let text = page.text
        let rows = text.components(separatedBy: "<tr class=").dropFirst()
        let eastRow = try #require(rows.first { $0.contains("<strong>east</strong>") }, "\(text)")
        let westRow = try #require(rows.first { $0.contains("<strong>west</strong>") }, "\(text)")
        #expect(eastRow.contains("<td>2 machines</td>") && eastRow.contains("<td>0 s</td>"), "\(eastRow)")
        #expect(westRow.contains("<td>1 machine</td>") && westRow.contains("<td>0 s</td>"), "\(westRow)")
        #expect(text.contains("2 relays · 3 machines"), "\(text)")
        for header in ["cache-control: no-store", "x-frame-options: deny", "content-security-policy: default-src 'none'"] {
            #expect(page.headers.lowercased().contains(header), "\(page.headers)")
        }
        #expect(!text.contains("<script"))

        // A one-time login link works once.
        let link = try CLI.run(["vault", "admin", "link", "--data", vault.data, "bob"])
        let token = String(link.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "/login/").last ?? "")
        #expect(try ConsoleEndToEndTests.curl(base + "/login/\(token)", jar: s.sub("jar-bob")).status == 303)
        #expect(try ConsoleEndToEndTests.curl(base + "/", jar: s.sub("jar-bob")).status == 200)
        #expect(try ConsoleEndToEndTests.curl(base + "/login/\(token)", jar: s.sub("jar-other")).status == 401)

        // Removing an administrator ends its session (this node checks the store at most every 5 s; the page
        // is asked until then, with no sleep: each request is a check).
        #expect(try CLI.run(["vault", "admin", "remove", "--data", vault.data, "bob"]).status == 0)
        #expect(try CLI.run(["vault", "admin", "remove", "--data", vault.data, "bob"]).status == 14)
        let deadline = Date().addingTimeInterval(30)
        var ended = false
        while Date() < deadline && !ended { ended = try ConsoleEndToEndTests.curl(base + "/", jar: s.sub("jar-bob")).status == 303 }
        #expect(ended)

        // `relay serve` sends a record of its own once it forwards (here: when it starts, registered): west's
        // newest record is replaced by a later one, waited for as the harnesses wait.
        let before = statusFiles(vault.data).filter { $0.contains("/objects/") }
        #expect(west.stop() == 0)
        try west.start()
        let waitUntil = Date().addingTimeInterval(30)
        var replaced = false
        while Date() < waitUntil && !replaced {
            // Changed, and the older record deleted (the vault puts the new one first, then deletes the older).
            let now = statusFiles(vault.data).filter { $0.contains("/objects/") }
            replaced = Set(now) != Set(before) && now.count == before.count
            if !replaced { usleep(20_000) }
        }
        #expect(replaced, "relay serve sent no status record: \(west.log)")

        // The stored records (both copy sets) hold counts and times: no file or machine name.
        let records = statusFiles(vault.data)
        #expect(records.filter { $0.contains("/objects/meta/status/") }.count == 2, "one record per relay: \(records)")
        for path in records {
            let bytes = try #require(FileManager.default.contents(atPath: path))
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.contains("\"v\":1") && text.contains("\"machine_count\":"), "\(text)")
            for secret in [Self.fileName, "payroll", "pc-east-1", "pc-west-1", "salaries"] { #expect(!text.contains(secret), "\(path): \(secret)") }
        }
    }

    /// The port a listener wrote to `file`, waited for as the harnesses wait for theirs (the console's listener
    /// may come up after the vault's).
    static func port(_ file: String) throws -> Int { try waitForPortFile(file, "the vault console") }

    /// Every file under `meta/status/` of the vault's copy sets.
    func statusFiles(_ data: String) -> [String] {
        var out: [String] = []
        for set in ["objects", "secondary"] {
            let base = data + "/" + set + "/meta/status"
            for rel in (try? FileManager.default.subpathsOfDirectory(atPath: base)) ?? [] where rel.hasSuffix(".json") {
                out.append(base + "/" + rel)
            }
        }
        return out
    }
}
