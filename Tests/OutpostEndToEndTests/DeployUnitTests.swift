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
