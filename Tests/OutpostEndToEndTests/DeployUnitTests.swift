import Foundation
import Testing

/// The systemd units in Deploy/ as an administrator installs them (issue 8).
@Suite struct DeployUnitTests {
    static let deploy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Deploy").path

    func unit(_ name: String) throws -> [String] {
        try String(contentsOfFile: Self.deploy + "/" + name, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    /// A shell would expand "*.tmp" in OUTPOST_EXCLUDES into the names of files, which would then be backed up
    /// as paths; systemd's own splitting of `$VAR` never globs.
    @Test func excludesAreNotExpandedByAShell() throws {
        for name in ["outpost-backup@.service", "outpost-push@.service"] {
            let exec = try unit(name).filter { $0.hasPrefix("ExecStart=") }
            #expect(!exec.isEmpty)
            for line in exec {
                #expect(!line.contains("/bin/sh") && !line.contains("bash"), "\(name): \(line)")
                #expect(line.contains("$OUTPOST_EXCLUDES"), "\(name): \(line)")
            }
        }
    }

    /// gc runs while the relay serves (issue 11): the relay's maintenance must not stop the relay (pushes would
    /// exit 20 meanwhile); it checks, then prunes and collects garbage, hardened as the relay's own unit.
    @Test func relayMaintenanceRunsWhileTheRelayServes() throws {
        let lines = try unit("outpost-relay-maintenance.service")
        #expect(!lines.contains { $0.hasPrefix("Conflicts=") })
        #expect(!lines.contains { $0.contains("systemctl") })
        let execs = lines.filter { $0.hasPrefix("ExecStart=") }
        #expect(execs.first?.contains("relay check") == true)
        #expect(execs.last?.contains("relay prune") == true && execs.last?.contains("--gc") == true)
        #expect(!execs.contains { $0.contains("store gc") })
        for setting in ["User=outpost", "NoNewPrivileges=true", "ProtectSystem=strict", "ProtectHome=true", "PrivateTmp=true"] {
            #expect(lines.contains(setting), "\(setting)")
        }
        #expect(FileManager.default.fileExists(atPath: Self.deploy + "/outpost-relay-maintenance.timer"))
    }
}

extension DeployUnitTests {
    /// The agent reads what it protects through CAP_DAC_READ_SEARCH as its own user, never as root, and is not
    /// restarted when the relay refused its credential (issue 12).
    @Test func theAgentRunsAsItsOwnUserWithReadAccessOnly() throws {
        let lines = try unit("outpost-agent.service")
        for setting in [
            "User=outpost-agent", "AmbientCapabilities=CAP_DAC_READ_SEARCH", "CapabilityBoundingSet=CAP_DAC_READ_SEARCH", "NoNewPrivileges=true",
            "ProtectSystem=strict", "PrivateTmp=true", "Restart=on-failure", "RestartPreventExitStatus=19", "StateDirectory=outpost-agent",
        ] {
            #expect(lines.contains(setting), "\(setting)")
        }
        #expect(lines.contains { $0.hasPrefix("ExecStart=") && $0.contains("agent run") })
        #expect(!lines.contains("User=root"))
    }
}

/// Deployment (issue 13): every unit as systemd reads it, the three services' users and hardening, the install
/// script and the container file.
extension DeployUnitTests {
    static var root: String { (deploy as NSString).deletingLastPathComponent }

    static func units() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: deploy).filter { $0.hasSuffix(".service") || $0.hasSuffix(".timer") }.sorted()
    }

    /// Runs a program to completion; stdout and stderr together (through a file: no pipe to drain).
    static func run(_ executable: String, _ args: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        let log = NSTemporaryDirectory() + "/outpost-deploy-\(UUID().uuidString).log"
        FileManager.default.createFile(atPath: log, contents: nil)
        defer { unlink(log) }
        let handle = FileHandle(forWritingAtPath: log)!
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        try? handle.close()
        return (p.terminationStatus, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    static func systemdAnalyze() throws -> String {
        for dir in ["/usr/bin", "/bin", "/usr/local/bin"] where FileManager.default.isExecutableFile(atPath: dir + "/systemd-analyze") {
            return dir + "/systemd-analyze"
        }
        throw HarnessError("systemd-analyze is missing: install Debian's systemd package (bash Deploy/install-deps.sh)")
    }

    /// `systemd-analyze verify` answers 0 even for an unknown key or a value it cannot parse ("ignoring"): every
    /// line it prints about these units fails the test. The units are copied with ExecStart pointing at the built
    /// binary (verify wants an executable there); their users need not exist here (systemd 252 does not look them
    /// up; a later one that warns about a missing user is tolerated).
    @Test func everyUnitPassesSystemdAnalyzeVerify() throws {
        let analyze = try Self.systemdAnalyze()
        let scratch = Scratch()
        let units = try Self.units()
        #expect(units.count >= 11)
        for name in units {
            let text = try String(contentsOfFile: Self.deploy + "/" + name, encoding: .utf8)
            try text.replacingOccurrences(of: "/usr/local/bin/outpost", with: CLI.binary).write(
                toFile: scratch.sub(name), atomically: true, encoding: .utf8)
        }
        for name in units {
            let r = try Self.run(analyze, ["verify", "--man=no", scratch.sub(name)])
            let problems = r.output.split(separator: "\n").map(String.init).filter { line in
                let l = line.lowercased()
                let missingUser =
                    (l.contains("user") || l.contains("group")) && (l.contains("not found") || l.contains("does not exist") || l.contains("resolve"))
                return (line.contains(scratch.path) || line.contains("outpost")) && !missingUser
            }
            #expect(r.status == 0 && problems.isEmpty, "\(name): \(r.output)")
        }
    }

    /// Each server has its own user, writes only its data directory (the one its ExecStart serves), and is
    /// hardened; the agent keeps /home visible (it backs it up) and writes only its StateDirectory.
    @Test func theServicesRunHardenedAsTheirOwnUsers() throws {
        let common = [
            "NoNewPrivileges=true", "ProtectSystem=strict", "PrivateTmp=true", "Restart=on-failure", "ProtectKernelTunables=true",
            "ProtectKernelModules=true", "ProtectKernelLogs=true", "ProtectControlGroups=true", "ProtectClock=true",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "LockPersonality=true", "RestrictSUIDSGID=true", "RestrictRealtime=true",
        ]
        var users: Set<String> = []
        for (name, user, data) in [
            ("outpost-relay.service", "outpost", "/var/lib/outpost/relay"),
            ("outpost-vault.service", "outpost-vault", "/var/lib/outpost-vault/vault"),
        ] {
            let lines = try unit(name)
            for setting in common + ["User=\(user)", "ProtectHome=true", "PrivateDevices=true", "CapabilityBoundingSet=", "ReadWritePaths=\(data)"] {
                #expect(lines.contains(setting), "\(name): \(setting)")
            }
            #expect(lines.filter { $0.hasPrefix("ReadWritePaths=") }.count == 1, "\(name)")
            #expect(lines.contains { $0.hasPrefix("ExecStart=") && $0.hasSuffix("serve --data \(data)") }, "\(name)")
            users.insert(user)
        }
        let agent = try unit("outpost-agent.service")
        for setting in common + ["User=outpost-agent", "StateDirectory=outpost-agent"] {
            #expect(agent.contains(setting), "outpost-agent.service: \(setting)")
        }
        #expect(!agent.contains { $0.hasPrefix("ProtectHome=") || $0.hasPrefix("ReadWritePaths=") })
        users.insert("outpost-agent")
        #expect(users.count == 3)
    }

    /// systemd's own rating of the hardening (`systemd-analyze security`, 0 = locked down, 10 = exposed), so that a
    /// setting dropped by mistake shows.
    @Test func theServicesExposureStaysLow() throws {
        let analyze = try Self.systemdAnalyze()
        for (name, limit) in [("outpost-relay.service", 2.0), ("outpost-vault.service", 2.0), ("outpost-agent.service", 5.0)] {
            let r = try Self.run(analyze, ["security", "--offline=yes", "--no-pager", Self.deploy + "/" + name])
            if r.output.contains("unrecognized option") { return }  // systemd before 252
            let score = r.output.split(separator: "\n").last { $0.contains("Overall exposure level") }
                .flatMap { $0.split(separator: ":").last?.split(separator: " ").first }.flatMap { Double($0) }
            #expect(score != nil && score! <= limit, "\(name): \(r.output.suffix(300))")
        }
    }

    /// The install script: valid bash, every unit in Deploy/ installed by some role, wrong arguments and a
    /// user other than root refused before anything changes (`--check` changes nothing).
    @Test func theInstallScriptChecksItsArgumentsAndRoot() throws {
        for script in ["install.sh", "setup.sh", "install-deps.sh"] {
            let r = try Self.run("/bin/bash", ["-n", Self.deploy + "/" + script])
            #expect(r.status == 0, "\(script): \(r.output)")
        }
        let install = Self.deploy + "/install.sh"
        let text = try String(contentsOfFile: install, encoding: .utf8)
        for name in try Self.units() where !text.contains(name) { Issue.record("install.sh installs no role's \(name)") }
        let bogus = try Self.run("/bin/bash", [install, "--check", "--role", "bogus"])
        #expect(bogus.status == 64 && bogus.output.contains("bogus"), "\(bogus.output)")
        let none = try Self.run("/bin/bash", [install, "--check"])
        #expect(none.status == 64 && none.output.contains("--role"), "\(none.output)")
        let asNobody: (status: Int32, output: String)
        if getuid() == 0 {
            #expect(try Self.run("/bin/bash", [install, "--check", "--role", "relay", "--role", "agent"]).status == 0)
            asNobody = try Self.run(
                "/usr/bin/setpriv", ["--reuid", "65534", "--regid", "65534", "--clear-groups", "/bin/bash", install, "--role", "vault"])
        } else {
            asNobody = try Self.run("/bin/bash", [install, "--role", "vault"])
        }
        #expect(asNobody.status == 77 && asNobody.output.contains("as root"), "\(asNobody.output)")
    }

    /// The container file: built from a Swift image into debian:12-slim, run as a user of its own, `outpost` as the
    /// entry point, both data directories as volumes, and the documented `podman run` lines use them.
    @Test func theContainerFileRunsRelayAndVaultUnprivileged() throws {
        let lines = try unit("Containerfile")
        let froms = lines.filter { $0.hasPrefix("FROM ") }
        #expect(froms.count == 2 && froms[0].contains("swift:") && froms[1].hasSuffix("debian:12-slim"), "\(froms)")
        #expect(lines.contains { $0.hasPrefix("RUN apt-get") && $0.contains("libzstd1") && $0.contains("libsqlite3-0") })
        #expect(lines.contains("USER outpost"))
        #expect(lines.contains(#"ENTRYPOINT ["outpost"]"#))
        #expect(lines.contains(#"VOLUME ["/var/lib/outpost", "/var/lib/outpost-vault"]"#))
        let runs = lines.filter { $0.hasPrefix("#   podman run -d") }
        #expect(
            runs.contains { $0.contains("outpost-relay:/var/lib/outpost ") } && runs.contains { $0.contains("outpost-vault:/var/lib/outpost-vault ") }
        )
    }
}
