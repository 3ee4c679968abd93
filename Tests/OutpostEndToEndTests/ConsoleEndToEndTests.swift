import Foundation
import OutpostClient
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The relay's web console (issue 13) through the real binary, with curl as the browser: sessions, CSRF, the
/// login limit, the pages, the file browser and its downloads, and what it refuses.
@Suite(.serialized, .timeLimit(.minutes(5))) struct ConsoleEndToEndTests {
    struct Answer {
        var status: Int
        var headers: String
        var body: Data
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// One curl request to the console; `jar` keeps cookies like a browser.
    static func curl(_ url: String, jar: String, _ extra: [String] = []) throws -> Answer {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString).path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = ["-s", "-k", "-b", jar, "-c", jar, "-D", dir + "/h", "-o", dir + "/b", "-w", "%{http_code}", url] + extra
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let code = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Answer(
            status: Int(String(decoding: code, as: UTF8.self)) ?? 0, headers: (try? String(contentsOfFile: dir + "/h", encoding: .utf8)) ?? "",
            body: (try? Data(contentsOf: URL(fileURLWithPath: dir + "/b"))) ?? Data())
    }

    static func csrf(_ html: String) -> String? {
        guard let r = html.range(of: "name=\"csrf\" value=\"") else { return nil }
        return String(html[r.upperBound...].prefix(64))
    }

    @Test func anAdministratorLogsInBrowsesAPointDownloadsAndActsAndEverythingElseIsRefused() throws {
        let s = Scratch()
        let relay = try RelayHarness(s)
        let portFile = s.sub("console-port")
        try relay.start(extra: ["--console-listen", "127.0.0.1:0", "--console-port-file", portFile])
        defer { relay.kill9() }
        let port = try waitForPortFile(portFile, "the relay console")
        let base = "https://127.0.0.1:\(port)"
        let config = try relay.enroll("pc1")
        s.write("data/docs/a.txt", Data("hello console\n".utf8))
        let big = randomData(3_000_000)
        s.write("data/docs/big.bin", big)
        s.write("data/x/ünïcode name with a very long folder name to need pax \(String(repeating: "y", count: 90)).txt", Data("long\n".utf8))
        let backup = try CLI.run(["backup", "--config", config, "--json", s.sub("data")])
        #expect(backup.status == 0, "\(backup.stderr)")
        let point = (json(backup.stdout) as? [String: Any])?["id"] as? String ?? ""
        s.write("pw", Data("correct horse battery\n".utf8))
        #expect(try CLI.run(["relay", "admin", "add", "--data", relay.data, "alice", "--password-file", s.sub("pw")]).status == 0)
        #expect(try CLI.run(["relay", "admin", "add", "--data", relay.data, "bob", "--password-file", s.sub("pw")]).status == 0)
        s.write("short", Data("tiny\n".utf8))
        let short = try CLI.run(["relay", "admin", "add", "--data", relay.data, "carol", "--password-file", s.sub("short")])
        #expect(short.status == 64)
        let jar = s.sub("jar"), other = s.sub("jar2")

        // No session: pages send to the login form, actions are refused; a machine's credential opens nothing.
        #expect(try Self.curl(base + "/", jar: jar).status == 303)
        let credential = try ClientConfiguration.load(path: config).credential
        #expect(try Self.curl(base + "/", jar: other, ["-H", "Authorization: Bearer \(credential)"]).status == 303)
        #expect(
            try Self.curl(base + "/points/\(point)/file?path=/docs/a.txt", jar: other, ["-H", "Authorization: Bearer \(credential)"]).status == 303)
        #expect(try Self.curl(base + "/machines/pc1/backup-now", jar: other, ["-X", "POST", "-d", "csrf=x"]).status == 401)

        // Log in: a session cookie marked Secure, HttpOnly, SameSite=Strict.
        let wrong = try Self.curl(base + "/login", jar: jar, ["-d", "name=alice&password=nope"])
        #expect(wrong.status == 401)
        let login = try Self.curl(base + "/login", jar: jar, ["-d", "name=alice&password=correct+horse+battery"])
        #expect(login.status == 303)
        let cookie = (login.headers.split(whereSeparator: \.isNewline).first { $0.lowercased().hasPrefix("set-cookie") } ?? "").lowercased()
        #expect(cookie.contains("secure") && cookie.contains("httponly") && cookie.contains("samesite=strict"), "\(login.headers)")
        let overview = try Self.curl(base + "/", jar: jar)
        #expect(overview.status == 200)
        #expect(overview.text.contains("pc1"))
        #expect(overview.headers.contains("Content-Security-Policy"))
        let token = try #require(Self.csrf(overview.text))

        // The machine, the point, the files.
        #expect(try Self.curl(base + "/machines/pc1", jar: jar).text.contains(String(point.prefix(8))))
        // The point holds the folder under its absolute path.
        let top = s.sub("data")
        let root = try Self.curl(base + "/points/\(point)/browse?path=\(top)", jar: jar)
        #expect(root.status == 200 && root.text.contains("docs/"), "\(root.text)")
        let docs = try Self.curl(base + "/points/\(point)/browse?path=\(top)/docs", jar: jar)
        #expect(docs.text.contains("a.txt") && docs.text.contains("big.bin"))
        #expect(try Self.curl(base + "/points/\(point)/browse?path=\(top)&q=BIG", jar: jar).text.contains("/docs/big.bin"))
        #expect(try Self.curl(base + "/points/\(point)/file?path=\(top)/docs/big.bin", jar: jar).body == big)
        #expect(try Self.curl(base + "/points/\(point)/file?path=\(top)/docs/a.txt", jar: jar).text == "hello console\n")
        for trick in ["\(top)/docs/../docs/a.txt", "\(top)/docs/./a.txt", "/../../etc/passwd"] {
            #expect(try Self.curl(base + "/points/\(point)/file?path=\(trick)", jar: jar, ["--path-as-is"]).status == 400, "\(trick)")
        }
        #expect(try Self.curl(base + "/points/\(point)/file?path=/nothing", jar: jar).status == 404)
        #expect(try Self.curl(base + "/points/\(String(repeating: "0", count: 64))/browse", jar: jar).status == 404)
        // A folder as tar, unpacked by tar: the same bytes, long and non-ASCII names included.
        let tarAnswer = try Self.curl(base + "/points/\(point)/tar?path=\(top)", jar: jar)
        #expect(tarAnswer.status == 200)
        try tarAnswer.body.write(to: URL(fileURLWithPath: s.sub("all.tar")))
        try FileManager.default.createDirectory(atPath: s.sub("untar"), withIntermediateDirectories: true)
        #expect(try CLI.system("/usr/bin/tar", ["-xf", s.sub("all.tar"), "-C", s.sub("untar")]) == 0)
        #expect(treesDiffer(top, s.sub("untar/data")).isEmpty, "\(treesDiffer(top, s.sub("untar/data")))")

        // Actions need the session's CSRF token.
        #expect(try Self.curl(base + "/machines/pc1/backup-now", jar: jar, ["-X", "POST"]).status == 403)
        #expect(try Self.curl(base + "/machines/pc1/backup-now", jar: jar, ["-d", "csrf=\(String(repeating: "0", count: 64))"]).status == 403)
        let queued = try Self.curl(base + "/machines/pc1/backup-now", jar: jar, ["-d", "csrf=\(token)"])
        #expect(queued.status == 303)
        let jobs = try CLI.run(["relay", "jobs", "--data", relay.data, "--state", "queued", "--json"])
        #expect((json(jobs.stdout) as? [[String: Any]])?.count == 1)
        let jobPage = try Self.curl(
            base
                + (queued.headers.split(whereSeparator: \.isNewline).first { $0.lowercased().hasPrefix("location") }?.split(separator: " ").last.map {
                    String($0).trimmingCharacters(in: .whitespacesAndNewlines)
                } ?? "/"), jar: jar)
        #expect(jobPage.status == 200 && jobPage.text.contains("queued"))

        // A one-time login link works once.
        let link = try CLI.run(["relay", "admin", "link", "--data", relay.data, "bob"])
        let path = String(link.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "/login/").last ?? "")
        #expect(try Self.curl(base + "/login/\(path)", jar: other).status == 303)
        #expect(try Self.curl(base + "/", jar: other).status == 200)
        #expect(try Self.curl(base + "/login/\(path)", jar: s.sub("jar3")).status == 401)

        // Log out ends the session.
        #expect(try Self.curl(base + "/logout", jar: jar, ["-d", "csrf=\(token)"]).status == 303)
        #expect(try Self.curl(base + "/", jar: jar).status == 303)

        // Failed logins are limited (5 in 5 minutes per address and per name; one failed above): the next is
        // refused before the password is looked at.
        for _ in 0..<4 { #expect(try Self.curl(base + "/login", jar: s.sub("jar4"), ["-d", "name=bob&password=guess"]).status == 401) }
        #expect(try Self.curl(base + "/login", jar: s.sub("jar4"), ["-d", "name=bob&password=correct+horse+battery"]).status == 429)
        let admins = try CLI.run(["relay", "admin", "list", "--data", relay.data])
        #expect(admins.stdout.contains("alice") && admins.stdout.contains("bob") && !admins.stdout.contains("carol"))
    }
}
