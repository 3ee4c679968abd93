import Crypto
import Foundation
import OutpostClient
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The agent, the jobs it reports and the relay's alerts (issue 12), with the real binary: relays and agents are
/// processes on 127.0.0.1, the clock a file the test moves (OUTPOST_TEST_CLOCK_FILE), alerts go to a real SMTP
/// server (aiosmtpd) and a local webhook receiver.
@Suite(.serialized, .timeLimit(.minutes(5))) struct AgentEndToEndTests {
    /// A scratch relay with its clock file, and agents started against it.
    final class Site {
        let s = Scratch()
        let relay: RelayHarness
        let clockFile: String
        var agents: [String: Process] = [:]
        var configs: [String: String] = [:]

        init(alerts: String = "") throws {
            relay = try RelayHarness(s)
            clockFile = s.sub("clock-offset")
            try "0".write(toFile: clockFile, atomically: true, encoding: .utf8)
            let toml = relay.data + "/relay.toml"
            let text = try String(contentsOfFile: toml, encoding: .utf8)
            try (text + "\n[alerts]\ncheck_interval_seconds = 1\nmissed_grace_minutes = 0\nmin_free_percent = 0\n" + alerts)
                .write(toFile: toml, atomically: true, encoding: .utf8)
            try relay.start(environment: ["OUTPOST_TEST_CLOCK_FILE": clockFile, "TZ": "UTC"])
        }

        deinit {
            for p in agents.values where p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
            }
            relay.kill9()
        }

        func restartRelay() throws {
            try relay.start(environment: ["OUTPOST_TEST_CLOCK_FILE": clockFile, "TZ": "UTC"])
        }

        /// Moves every process's clock `seconds` ahead of the real one.
        func shiftClock(to seconds: Double) throws {
            try String(seconds).write(toFile: clockFile, atomically: true, encoding: .utf8)
        }

        func enroll(_ machine: String) throws -> String {
            let c = try relay.enroll(machine)
            configs[machine] = c
            return c
        }

        func startAgent(_ machine: String, allowHook: String? = nil) throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: CLI.binary)
            p.arguments =
                ["agent", "run", "--config", configs[machine]!, "--state", s.sub("\(machine)-agent.json")]
                + (allowHook.map { ["--allow-hook", $0] } ?? [])
            p.environment = ProcessInfo.processInfo.environment.merging([
                "OUTPOST_TEST_CLOCK_FILE": clockFile, "OUTPOST_TEST_AGENT_MAX_SLEEP": "0.2", "OUTPOST_TEST_AGENT_POLL_WAIT": "2", "TZ": "UTC",
            ]) { _, b in b }
            let log = s.sub("\(machine)-agent.log")
            FileManager.default.createFile(atPath: log, contents: nil)
            let handle = FileHandle(forWritingAtPath: log)!
            handle.seekToEndOfFile()
            p.standardError = handle
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            agents[machine] = p
        }

        func stopAgent(_ machine: String) -> Int32 {
            guard let p = agents[machine] else { return -1 }
            kill(p.processIdentifier, SIGTERM)
            p.waitUntilExit()
            return p.terminationStatus
        }

        func agentLog(_ machine: String) -> String { (try? String(contentsOfFile: s.sub("\(machine)-agent.log"), encoding: .utf8)) ?? "" }

        func jobs(_ extra: [String] = []) throws -> [[String: Any]] {
            let r = try CLI.run(["relay", "jobs", "--data", relay.data, "--json"] + extra)
            return (json(r.stdout) as? [[String: Any]]) ?? []
        }

        func alerts(since: String? = nil) throws -> [[String: Any]] {
            let r = try CLI.run(["relay", "alerts", "--data", relay.data, "--json"] + (since.map { ["--since", $0] } ?? []))
            return ((json(r.stdout) as? [String: Any])?["alerts"] as? [[String: Any]]) ?? []
        }

        func data(_ machine: String) -> String {
            let dir = s.sub("\(machine)-data")
            s.write("\(machine)-data/a.txt", Data("hello from \(machine)\n".utf8))
            s.write("\(machine)-data/sub/b.bin", randomData(200_000))
            return dir
        }
    }

    /// Waits until `check` holds, looking every 100 ms, at most `seconds`.
    static func eventually(_ seconds: Double, _ what: String, _ check: () throws -> Bool) throws {
        let until = Date().addingTimeInterval(seconds)
        while Date() < until {
            if try check() { return }
            usleep(100_000)
        }
        throw HarnessError("\(what) did not happen within \(seconds) s")
    }

    /// Seconds from now to just after the next quarter hour (UTC): the next slot of `every 15m`.
    static func secondsToNextQuarter(after offset: Double = 0) -> Double {
        let now = Date().timeIntervalSince1970 + offset
        return (now / 900).rounded(.down) * 900 + 900 - now + 2
    }

    @Test func twoAgentsRunBackupNowWithinSecondsAndTheirScheduleOnce() throws {
        let site = try Site()
        let r = site.relay
        _ = try site.enroll("pc1")
        _ = try site.enroll("pc2")
        let d1 = site.data("pc1"), d2 = site.data("pc2")
        #expect(
            try CLI.run(["relay", "group", "create", "--data", r.data, "g1", "--machine", "pc1", "--path", d1, "--schedule", "every 15m"]).status == 0
        )
        #expect(
            try CLI.run(["relay", "group", "create", "--data", r.data, "g2", "--machine", "pc2", "--path", d2, "--schedule", "every 15m"]).status == 0
        )
        try site.startAgent("pc1")
        try site.startAgent("pc2")

        // backup-now: queued, taken by the agent, completed; within seconds.
        let started = Date()
        let now = try CLI.run(["relay", "backup-now", "--data", r.data, "--machine", "pc1", "--wait", "--timeout", "60"])
        #expect(now.status == 0, "\(now.stdout) \(now.stderr)\n\(site.agentLog("pc1"))")
        #expect(Date().timeIntervalSince(started) < 30)
        let nowJobs = try site.jobs(["--machine", "pc1"]).filter { $0["trigger"] as? String == "now" }
        #expect(nowJobs.count == 1)
        #expect(nowJobs.first?["state"] as? String == "completed")
        #expect((nowJobs.first?["point"] as? String)?.count == 64)
        #expect((nowJobs.first?["files"] as? Int) == 2)

        // The clock passes a slot, then four more: each agent runs its schedule once for the first, once for the rest.
        let first = Self.secondsToNextQuarter()
        try site.shiftClock(to: first)
        func scheduled() throws -> [[String: Any]] { try site.jobs().filter { $0["trigger"] as? String == "schedule" } }
        try Self.eventually(60, "a scheduled backup on each machine") {
            let done = try scheduled().filter { $0["state"] as? String == "completed" }
            return Set(done.compactMap { $0["machine"] as? String }) == ["pc1", "pc2"]
        }
        try site.shiftClock(to: first + 4 * 900)
        try Self.eventually(60, "the backup of the slots passed") {
            try scheduled().filter { $0["state"] as? String == "completed" }.count == 4
        }
        // None runs twice for the four slots passed: the next is a quarter of an hour away.
        #expect(try site.jobs(["--state", "running"]).isEmpty)
        #expect(try scheduled().count == 4, "\(site.agentLog("pc1"))")
        let points = try CLI.run(["points", "--config", site.configs["pc2"]!])
        #expect(points.status == 0)
        #expect(points.stdout.split(separator: "\n").count >= 2)
        // A stopped agent reports a clean stop.
        #expect(site.stopAgent("pc1") == 0)
    }

    @Test func slotsThatPassedWhileTheRelayWasDownRunOnceWhenItComesBack() throws {
        let site = try Site()
        let r = site.relay
        _ = try site.enroll("pc1")
        let d = site.data("pc1")
        #expect(
            try CLI.run(["relay", "group", "create", "--data", r.data, "g", "--machine", "pc1", "--path", d, "--schedule", "every 15m"]).status == 0)
        try site.startAgent("pc1")
        try Self.eventually(30, "the agent's first plan") { site.agentLog("pc1").contains("plan received") }
        #expect(r.stop() == 0)
        // Three slots pass with the relay down: the agent keeps its plan and waits for the relay.
        try site.shiftClock(to: Self.secondsToNextQuarter() + 2 * 900)
        try Self.eventually(60, "the agent finding the relay down") { site.agentLog("pc1").contains("the backup waits for it") }
        try site.restartRelay()
        func scheduled() throws -> [[String: Any]] { try site.jobs().filter { $0["trigger"] as? String == "schedule" } }
        try Self.eventually(90, "the backup of the slots passed") { try scheduled().contains { $0["state"] as? String == "completed" } }
        #expect(try scheduled().count == 1, "\(site.agentLog("pc1"))")
        #expect(try site.jobs(["--state", "running"]).isEmpty)
        #expect(site.stopAgent("pc1") == 0)
    }

    @Test func aFailingPreHookFailsTheJobWithItsOutputAndAHookTheMachineDoesNotAllowIsRefused() throws {
        let site = try Site()
        let r = site.relay
        _ = try site.enroll("db1")
        let d = site.data("db1")
        let hook = "echo dumping the database; echo disk full >&2; exit 3"
        #expect(
            try CLI.run([
                "relay", "group", "create", "--data", r.data, "dbs", "--machine", "db1", "--path", d, "--schedule", "daily 21:00", "--pre-hook",
                hook, "--hook-timeout", "30",
            ]).status == 0)
        // Not in the machine's allowed hooks: refused, nothing backed up.
        try site.startAgent("db1")
        let refused = try CLI.run(["relay", "backup-now", "--data", r.data, "--machine", "db1", "--wait", "--timeout", "60"])
        #expect(refused.status == 21)
        var jobs = try site.jobs(["--machine", "db1"])
        #expect((jobs.first?["detail"] as? String)?.contains("is not allowed on this machine") == true)
        #expect(jobs.first?["point"] == nil)
        #expect(site.stopAgent("db1") == 0)

        // Allowed: it runs, fails, and the job holds its status and output.
        try site.startAgent("db1", allowHook: hook)
        let failed = try CLI.run(["relay", "backup-now", "--data", r.data, "--machine", "db1", "--wait", "--timeout", "60"])
        #expect(failed.status == 21)
        jobs = try site.jobs(["--machine", "db1"])
        let detail = jobs.first?["detail"] as? String ?? ""
        #expect(jobs.first?["state"] as? String == "failed")
        #expect(detail.contains("exited with status 3"), "\(detail)")
        #expect(detail.contains("dumping the database") && detail.contains("disk full"), "\(detail)")
        #expect(jobs.first?["point"] == nil)
        // The failed job is an alert.
        try Self.eventually(30, "a job-failed alert") {
            try site.alerts().contains { $0["kind"] as? String == "job-failed" && $0["subject"] as? String == "backup:db1" }
        }

        // A hook that hangs is stopped at its time-out.
        let slow = "sleep 30"
        #expect(try CLI.run(["relay", "group", "edit", "--data", r.data, "dbs", "--pre-hook", slow, "--hook-timeout", "1"]).status == 0)
        #expect(site.stopAgent("db1") == 0)
        try site.startAgent("db1", allowHook: slow)
        let began = Date()
        let hung = try CLI.run(["relay", "backup-now", "--data", r.data, "--machine", "db1", "--wait", "--timeout", "60"])
        #expect(hung.status == 21)
        #expect(Date().timeIntervalSince(began) < 25)
        #expect((try site.jobs(["--machine", "db1"]).first?["detail"] as? String)?.contains("time-out of 1 s") == true)
        // Group changes are jobs.
        #expect(
            try site.jobs().contains {
                $0["kind"] as? String == "group" && ($0["detail"] as? String)?.contains("changed protection group dbs") == true
            })
    }

    @Test func badInputToBackupNowAndToTheAgentRoutesIsRefusedAndChangesNothing() throws {
        let site = try Site()
        let r = site.relay
        let unknown = try CLI.run(["relay", "backup-now", "--data", r.data, "--machine", "nobody"])
        #expect(unknown.status == 14)
        #expect(unknown.stderr.contains("no machine named nobody"))
        #expect(try site.jobs().isEmpty)
        // An agent without a valid credential is refused and stops with the credential's exit code.
        let config = try site.enroll("pc9")
        var text = try String(contentsOfFile: config, encoding: .utf8)
        text = text.replacingOccurrences(of: "outpost1:pc9:", with: "outpost1:pc9:x")
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        try site.startAgent("pc9")
        site.agents["pc9"]!.waitUntilExit()
        #expect(site.agents["pc9"]!.terminationStatus == 19, "\(site.agentLog("pc9"))")
        #expect(site.agentLog("pc9").contains("refused this machine's credential"))
        // The job routes refuse what is not the machine's or not running, with the client's status.
        let good = try site.enroll("pc7")
        let credential = try ClientConfiguration.load(path: good).credential
        func post(_ path: String, _ body: String) throws -> (Int, String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            p.arguments = [
                "-s", "-k", "-o", "/dev/stderr", "-w", "%{http_code}", "-H", "Authorization: Bearer \(credential)", "-H",
                "Content-Type: application/json", "-d", body, r.url + path,
            ]
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            try p.run()
            let code = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            return (Int(code) ?? 0, text)
        }
        let started = try post("/v1/agent/jobs", #"{"trigger":"manual"}"#)
        #expect(started.0 == 201, "\(started.1)")
        let id = (json(started.1) as? [String: Any])?["id"] as? Int ?? 0
        #expect(try post("/v1/agent/jobs", #"{"trigger":"cron"}"#).0 == 400)
        #expect(try post("/v1/agent/jobs", #"{"trigger":"now","claim":999999}"#).0 == 404)
        #expect(try post("/v1/agent/jobs/\(id)", #"{"bytes":-1,"files":0,"failedFiles":[]}"#).0 == 400)
        #expect(try post("/v1/agent/jobs/\(id)", #"{"state":"missed","bytes":0,"files":0,"failedFiles":[]}"#).0 == 400)
        #expect(try post("/v1/agent/jobs/\(id)", #"{"state":"completed","bytes":1,"files":1,"failedFiles":[]}"#).0 == 204)
        let again = try post("/v1/agent/jobs/\(id)", #"{"state":"failed","bytes":1,"files":1,"failedFiles":[]}"#)
        #expect(again.0 == 409 && again.1.contains("has ended"), "\(again)")
        #expect(try post("/v1/agent/jobs/999999", #"{"bytes":0,"files":0,"failedFiles":[]}"#).0 == 404)
        #expect(try site.jobs(["--machine", "pc7"]).first?["state"] as? String == "completed")
        // A group's hook with a line break is refused.
        _ = try site.enroll("pc8")
        let bad = try CLI.run([
            "relay", "group", "create", "--data", r.data, "g", "--machine", "pc8", "--path", "/srv", "--schedule", "daily 21:00", "--pre-hook",
            "a\nb",
        ])
        #expect(bad.status == 64)
        #expect(try CLI.run(["relay", "group", "list", "--data", r.data, "--json"]).stdout.contains("\"g\"") == false)
    }

    @Test func aStoppedAgentRaisesAMissedBackupAlertThatReachesMailAndWebhookAndClearsWhenItComesBack() throws {
        guard (try? CLI.system("/usr/bin/python3", ["-c", "import aiosmtpd"])) == 0 else {
            Issue.record("python3-aiosmtpd is missing: run Deploy/install-deps.sh")
            return
        }
        let s = Scratch()
        let support = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Support").path
        // The mail server and the webhook receiver, real and local.
        let mailbox = s.sub("mail.jsonl"), hooks = s.sub("hooks.jsonl")
        let smtp = try Helper([
            "/usr/bin/python3", support + "/smtp_server.py", "--out", mailbox, "--dir", s.path, "--user", "relay", "--password", "pw1",
        ])
        defer { smtp.stop() }
        let receiver = try Helper(["/usr/bin/python3", support + "/webhook_receiver.py", "--out", hooks])
        defer { receiver.stop() }
        let smtpPort = smtp.ready["port"] as! Int, ca = smtp.ready["ca"] as! String, hookPort = receiver.ready["port"] as! Int
        s.write("secret", Data("s3cret-shared\n".utf8))
        s.write("smtp-password", Data("pw1\n".utf8))
        let site = try Site(
            alerts: """
                webhook_url = "http://127.0.0.1:\(hookPort)/outpost"
                webhook_secret_file = "\(s.sub("secret"))"
                smtp_host = "127.0.0.1"
                smtp_port = \(smtpPort)
                smtp_user = "relay"
                smtp_password_file = "\(s.sub("smtp-password"))"
                smtp_ca_file = "\(ca)"
                smtp_from = "outpost@branch.test"
                smtp_to = ["admin@branch.test"]

                """)
        let r = site.relay
        _ = try site.enroll("pc1")
        let d = site.data("pc1")
        #expect(
            try CLI.run(["relay", "group", "create", "--data", r.data, "g", "--machine", "pc1", "--path", d, "--schedule", "every 15m"]).status == 0)
        try site.startAgent("pc1")
        #expect(try CLI.run(["relay", "backup-now", "--data", r.data, "--machine", "pc1", "--wait", "--timeout", "60"]).status == 0)
        #expect(try site.alerts().isEmpty)
        #expect(site.stopAgent("pc1") == 0)

        // Two slots pass with the agent stopped: the relay opens a missed-backup alert, once.
        let offset = Self.secondsToNextQuarter() + 900
        try site.shiftClock(to: offset)
        try Self.eventually(30, "a missed-backup alert") { try site.alerts().contains { $0["kind"] as? String == "missed-backup" } }
        func lines(_ path: String) -> [[String: Any]] {
            ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { json(String($0)) as? [String: Any] }
        }
        func mails() -> [[String: Any]] { lines(mailbox).filter { ($0["subject"] as? String)?.contains("missed-backup") == true } }
        func posts() -> [[String: Any]] { lines(hooks).filter { ($0["body"] as? String)?.contains("missed-backup") == true } }
        func state() throws -> String {
            try CLI.run(["relay", "alerts", "--data", r.data, "--since", "2000-01-01"]).stdout + "\nmail: \(lines(mailbox))\nhooks: \(lines(hooks))"
        }
        do { try Self.eventually(30, "the alert by mail and webhook") { mails().count == 1 && posts().count == 1 } } catch {
            Issue.record("\(error): \(try state())\n\(r.log.suffix(3000))")
            return
        }
        let mail = mails()[0]
        #expect((mail["subject"] as? String)?.contains("OPEN: missed-backup pc1") == true, "\(mail)")
        #expect(mail["tls"] as? Bool == true && mail["authenticated"] as? Bool == true)
        #expect(mail["rcpt_tos"] as? [String] == ["admin@branch.test"])
        let hook = posts()[0]
        let headers = hook["headers"] as? [String: String] ?? [:]
        let body = hook["body"] as? String ?? ""
        let timestamp = headers["x-outpost-timestamp"] ?? ""
        let mac = HMAC<SHA256>.authenticationCode(for: Data((timestamp + "." + body).utf8), using: SymmetricKey(data: Data("s3cret-shared".utf8)))
        #expect(headers["x-outpost-signature"] == "sha256=" + mac.map { String(format: "%02x", $0) }.joined(), "\(headers)")
        let payload = json(body) as? [String: Any] ?? [:]
        #expect(payload["event"] as? String == "opened" && payload["kind"] as? String == "missed-backup" && payload["subject"] as? String == "pc1")
        #expect(try site.jobs(["--state", "missed"]).count == 1)

        // The agent comes back: the time that passed runs once, the alert clears, and that is sent once too.
        try site.startAgent("pc1")
        try Self.eventually(60, "the alert cleared") { try site.alerts().isEmpty }
        do { try Self.eventually(30, "the clearing by mail and webhook") { mails().count == 2 && posts().count == 2 } } catch {
            Issue.record("\(error): \(try state())")
            return
        }
        #expect((mails()[1]["subject"] as? String)?.contains("cleared: missed-backup pc1") == true)
        #expect((json(posts()[1]["body"] as? String ?? "") as? [String: Any])?["event"] as? String == "cleared")
        #expect(try site.jobs(["--machine", "pc1"]).filter { $0["trigger"] as? String == "schedule" }.count == 1)
        let history = try site.alerts(since: "2000-01-01")
        #expect(history.count == 1 && history[0]["clearedAt"] != nil)
    }

    @Test func aDeliveryThatFailsIsRetriedAndShownAndTheTestCommandReportsEachChannel() throws {
        let s = Scratch()
        s.write("secret", Data("x\n".utf8))
        // Nothing listens on port 9 of loopback: the delivery fails, temporarily.
        let site = try Site(
            alerts: """
                webhook_url = "http://127.0.0.1:9/hook"
                webhook_secret_file = "\(s.sub("secret"))"

                """)
        let t = try CLI.run(["relay", "alerts", "--data", site.relay.data, "--test"])
        #expect(t.status == 21)
        #expect(t.stdout.contains("webhook: not delivered"), "\(t.stdout)")
        let listed = try CLI.run(["relay", "alerts", "--data", site.relay.data])
        #expect(listed.stdout.contains("deliveries that failed"), "\(listed.stdout)")
        #expect(listed.stdout.contains("127.0.0.1:9"))
        // A malformed [alerts] is refused with the key's name.
        let toml = site.relay.data + "/relay.toml"
        let text = try String(contentsOfFile: toml, encoding: .utf8)
        try (text + "smtp_host = \"mail\"\n").write(toFile: toml, atomically: true, encoding: .utf8)
        let bad = try CLI.run(["relay", "alerts", "--data", site.relay.data, "--test"])
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("smtp_from"), "\(bad.stderr)")
    }
}

/// A helper process of a test (the SMTP server, the webhook receiver): started, its first stdout line (JSON)
/// read as its readiness, killed at the end.
final class Helper {
    let process = Process()
    let ready: [String: Any]
    /// Held open while the helper should run: the SMTP server stops when its standard input ends, so that it dies
    /// with a test process that crashed.
    let input = Pipe()

    init(_ command: [String]) throws {
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        process.standardInput = input
        try process.run()
        var line = Data()
        while true {
            let byte = out.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty || byte == Data("\n".utf8) { break }
            line.append(byte)
        }
        guard let r = json(String(decoding: line, as: UTF8.self)) as? [String: Any] else {
            throw HarnessError("\(command[1]) did not start: \(String(decoding: line, as: UTF8.self))")
        }
        ready = r
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
