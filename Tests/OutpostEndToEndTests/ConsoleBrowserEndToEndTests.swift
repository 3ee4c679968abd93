import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The relay's web console (issue 13) in a real browser: Debian's chromium, headless, driven through
/// chromium-driver by Tests/Support/console_browser.py (python3-selenium), against the real `outpost relay serve`.
/// The browser logs in, reads the overview, a machine, a recovery point's folders, downloads a file, opens a job
/// with failed files, sees an alert open and then cleared, and has a sessionless POST and forms with a bad CSRF
/// token refused; every page must fit a 390 px phone. The vault's fleet view gets the same browser through
/// Tests/Support/vault_console_browser.py. Screenshots land in `$OUTPOST_ARTIFACTS/console/` (default
/// `.ci/artifacts/console/`). Skipped, naming the packages, where they are not installed.
@Suite(.serialized, .timeLimit(.minutes(3))) struct ConsoleBrowserEndToEndTests {
    static let python = "/usr/bin/python3"
    static let support = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Support").path
    static let script = support + "/console_browser.py"
    static let vaultScript = support + "/vault_console_browser.py"
    /// As root the backup with an unreadable file runs as nobody (root reads any file).
    static let asNobody = geteuid() == 0

    /// The Debian packages the browser needs that are not installed, with the command that installs them; nil
    /// when all are there.
    static let missing: String? = {
        var need: [String] = []
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") { need.append("chromium") }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver") { need.append("chromium-driver") }
        if quietStatus(python, ["-c", "import selenium"]) != 0 { need.append("python3-selenium") }
        if asNobody && !FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") { need.append("util-linux") }
        if need.isEmpty { return nil }
        let list = need.joined(separator: " ")
        return "the browser test needs Debian's \(list): sudo apt-get install -y \(list) (or bash Deploy/install-deps.sh)"
    }()

    static func quietStatus(_ path: String, _ args: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// `$OUTPOST_ARTIFACTS/console`, else `<repository>/.ci/artifacts/console`.
    static var artifacts: String {
        let root =
            ProcessInfo.processInfo.environment["OUTPOST_ARTIFACTS"]
            ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".ci/artifacts").path
        return root + "/console"
    }

    /// The artifacts folder, made, without the PNGs of `names` (and of `failure`) a run before left: each test
    /// removes its own, so the other test's screenshots stay.
    static func freshArtifacts(_ names: [String], failure: String) throws -> String {
        let shots = artifacts
        try FileManager.default.createDirectory(atPath: shots, withIntermediateDirectories: true)
        for name in names + [failure] { try? FileManager.default.removeItem(atPath: shots + "/" + name + ".png") }
        return shots
    }

    /// Runs a driver script in a process group of its own (the script's), killed whole when it overruns
    /// `seconds` and on every way out; each line it prints goes to `onLine` with the script's stdin. Returns its
    /// exit status and the end of its stderr (kept in `log`).
    static func drive(
        _ script: String, _ arguments: [String], log: String, seconds: Double, onLine: (String, FileHandle) throws -> Void
    ) throws -> (status: Int32, log: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [script] + arguments
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: log)
        try p.run()
        let pid = p.processIdentifier
        let watchdog = DispatchWorkItem {
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: watchdog)
        defer {
            watchdog.cancel()
            if p.isRunning {
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
                p.waitUntilExit()
            }
        }
        let lines = Lines(output.fileHandleForReading)
        while let line = lines.next() { try onLine(line, input.fileHandleForWriting) }
        p.waitUntilExit()
        return (p.terminationStatus, String(((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").suffix(4000)))
    }

    /// Lines of a pipe, read as they come (the script's side of the conversation).
    final class Lines {
        let handle: FileHandle
        var buffer = Data()
        init(_ handle: FileHandle) { self.handle = handle }
        /// The next line, or nil at the end of the output.
        func next() -> String? {
            while true {
                if let i = buffer.firstIndex(of: 0x0a) {
                    let line = String(decoding: buffer[buffer.startIndex..<i], as: UTF8.self)
                    buffer = Data(buffer[(i + 1)...])
                    return line
                }
                let more = handle.availableData
                if more.isEmpty {
                    defer { buffer = Data() }
                    return buffer.isEmpty ? nil : String(decoding: buffer, as: UTF8.self)
                }
                buffer.append(more)
            }
        }
    }

    @Test(.enabled(if: missing == nil, Comment(rawValue: missing ?? "")))
    func anAdministratorUsesTheConsoleInChromium() throws {
        let s = Scratch()
        chmod(s.path, 0o755)
        let relay = try RelayHarness(s)
        // Alerts looked at every second; the disk is not watched (a full build disk must not add an alert).
        let toml = relay.data + "/relay.toml"
        try (try String(contentsOfFile: toml, encoding: .utf8) + "\n[alerts]\ncheck_interval_seconds = 1\nmin_free_percent = 0\n")
            .write(toFile: toml, atomically: true, encoding: .utf8)
        s.write("password", Data("correct horse battery\n".utf8))
        #expect(try CLI.run(["relay", "admin", "add", "--data", relay.data, "alice", "--password-file", s.sub("password")]).status == 0)
        let portFile = s.sub("console-port")
        try relay.start(extra: ["--console-listen", "127.0.0.1:0", "--console-port-file", portFile])
        defer { relay.kill9() }
        let port = try waitForPortFile(portFile, "the relay console")

        // pc1: a clean backup with the file the browser downloads.
        let pc1 = try relay.enroll("pc1")
        let big = randomData(3_000_000)
        s.write("pc1-data/docs/a.txt", Data("hello browser\n".utf8))
        s.write("pc1-data/docs/big.bin", big)
        let first = try CLI.run(["backup", "--config", pc1, s.sub("pc1-data")])
        #expect(first.status == 0, "\(first.stderr)")
        // pc2: a backup with a file it cannot read, which finishes with warnings and opens a job-warnings alert.
        let pc2 = try relay.enroll("pc2")
        s.write("pc2-data/ok.txt", Data("fine\n".utf8))
        s.write("pc2-data/secret", Data("no\n".utf8), mode: 0o000)
        let prefix = Self.asNobody ? ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : []
        if Self.asNobody { #expect(try CLI.system("/bin/chown", ["65534:65534", pc2]) == 0) }
        let partial = try CLI.run(["backup", "--config", pc2, s.sub("pc2-data")], prefix: prefix)
        #expect(partial.status == 3, "\(partial.stderr)")
        let jobs = json(try CLI.run(["relay", "jobs", "--data", relay.data, "--machine", "pc2", "--json"]).stdout) as? [[String: Any]] ?? []
        let job = try #require(jobs.first?["id"] as? Int, "\(jobs)")
        #expect((jobs.first?["failedFiles"] as? [[String: Any]])?.count == 1, "\(jobs)")
        func openAlerts() throws -> [[String: Any]] {
            let r = try CLI.run(["relay", "alerts", "--data", relay.data, "--json"])
            return ((json(r.stdout) as? [String: Any])?["alerts"] as? [[String: Any]]) ?? []
        }
        try AgentEndToEndTests.eventually(30, "the job-warnings alert") {
            try openAlerts().contains { $0["kind"] as? String == "job-warnings" && $0["subject"] as? String == "backup:pc2" }
        }

        // The browser, in a process group of its own (the script's), killed whole if it overruns.
        let pages = ["login", "overview", "overview-phone", "machine", "browse", "job", "alerts", "alerts-cleared"]
        let shots = try Self.freshArtifacts(pages, failure: "failure")
        let started = Date()
        let arguments = [
            "--url", "https://127.0.0.1:\(port)", "--cert", relay.data + "/tls/cert.pem", "--admin", "alice", "--password-file",
            s.sub("password"), "--machine", "pc1", "--machine", "pc2", "--download", s.sub("pc1-data/docs/big.bin"), "--job", "\(job)",
            "--failed-path", s.sub("pc2-data/secret"), "--failed-reason", "Permission denied", "--alert-kind", "job-warnings",
            "--alert-subject", "backup:pc2", "--artifacts", shots, "--downloads", s.sub("downloads"),
        ]
        var screenshots: [String] = [], downloaded: String?, finished = false
        let run = try Self.drive(Self.script, arguments, log: s.sub("browser.log"), seconds: 120) { line, input in
            if line.hasPrefix("screenshot ") {
                screenshots.append(String(line.dropFirst("screenshot ".count)))
            } else if line.hasPrefix("downloaded ") {
                downloaded = String(line.dropFirst("downloaded ".count))
            } else if line == "step clear-alert" {
                // The file becomes readable; the next backup of pc2 is clean and clears the alert.
                chmod(s.sub("pc2-data/secret"), 0o644)
                let clean = try CLI.run(["backup", "--config", pc2, s.sub("pc2-data")], prefix: prefix)
                #expect(clean.status == 0, "\(clean.stderr)")
                try AgentEndToEndTests.eventually(30, "the alert cleared") { try openAlerts().isEmpty }
                input.write(Data("go\n".utf8))
            } else if line == "ok" {
                finished = true
            }
        }
        #expect(run.status == 0 && finished, "console_browser.py exited \(run.status): \(run.log)")
        print("the browser walked the console in \(String(format: "%.1f", Date().timeIntervalSince(started))) s; screenshots:")
        for path in screenshots { print("  \(path)") }

        let names = Set(screenshots.map { URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent })
        #expect(names.isSuperset(of: pages), "\(names)")
        for path in screenshots {
            #expect(FileManager.default.contents(atPath: path)?.starts(with: [0x89, 0x50, 0x4e, 0x47]) == true, "\(path) is not a PNG")
        }
        #expect(downloaded.flatMap { FileManager.default.contents(atPath: $0) } == big, "the browser's download differs from the source")
        // The refused forms changed nothing: no backup queued, no check run.
        let after = json(try CLI.run(["relay", "jobs", "--data", relay.data, "--json"]).stdout) as? [[String: Any]] ?? []
        #expect(!after.contains { $0["state"] as? String == "queued" || $0["kind"] as? String == "check" }, "\(after)")
    }

    /// The vault's fleet view in the same browser: two relays registered and forwarded (as
    /// VaultConsoleEndToEndTests sets them up), an administrator with a password; the walk is
    /// vault_console_browser.py's (login redirect, both relays with machine counts and lag, the GRS line, a 390 px
    /// phone, log-out ends the session).
    @Test(.enabled(if: missing == nil, Comment(rawValue: missing ?? "")))
    func anAdministratorSeesTheFleetInChromium() throws {
        let s = Scratch()
        let vault = try VaultHarness(s)
        let portFile = s.sub("vault-console-port")
        try vault.start(extra: ["--console-listen", "127.0.0.1:0", "--console-port-file", portFile])
        defer { vault.kill9() }
        let port = try VaultConsoleEndToEndTests.port(portFile)
        let east = try VaultConsoleEndToEndTests().relay(s, vault: vault, name: "east", machines: ["pc-east-1", "pc-east-2"])
        defer { east.kill9() }
        let west = try VaultConsoleEndToEndTests().relay(s, vault: vault, name: "west", machines: ["pc-west-1"])
        defer { west.kill9() }
        s.write("pw", Data("correct horse battery\n".utf8))
        #expect(try CLI.run(["vault", "admin", "add", "--data", vault.data, "alice", "--password-file", s.sub("pw")]).status == 0)

        let pages = ["vault-login", "fleet", "fleet-phone"]
        let shots = try Self.freshArtifacts(pages, failure: "vault-failure")
        let started = Date()
        let arguments = [
            "--url", "https://127.0.0.1:\(port)", "--cert", vault.data + "/tls/cert.pem", "--admin", "alice", "--password-file", s.sub("pw"),
            "--relay", "east=2", "--relay", "west=1", "--artifacts", shots,
        ]
        var screenshots: [String] = [], finished = false
        let run = try Self.drive(Self.vaultScript, arguments, log: s.sub("vault-browser.log"), seconds: 60) { line, _ in
            if line.hasPrefix("screenshot ") { screenshots.append(String(line.dropFirst("screenshot ".count))) }
            if line == "ok" { finished = true }
        }
        #expect(run.status == 0 && finished, "vault_console_browser.py exited \(run.status): \(run.log)")
        print("the browser walked the fleet view in \(String(format: "%.1f", Date().timeIntervalSince(started))) s; screenshots:")
        for path in screenshots { print("  \(path)") }
        let names = Set(screenshots.map { URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent })
        #expect(names == Set(pages), "\(names)")
        for path in screenshots {
            #expect(FileManager.default.contents(atPath: path)?.starts(with: [0x89, 0x50, 0x4e, 0x47]) == true, "\(path) is not a PNG")
        }
    }
}
