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

    /// gc needs the store to itself: the relay's maintenance stops the relay for it and starts it again.
    @Test func relayMaintenanceStopsAndRestartsTheRelay() throws {
        let lines = try unit("outpost-relay-maintenance.service")
        #expect(lines.contains("Conflicts=outpost-relay.service"))
        #expect(lines.contains { $0.hasPrefix("ExecStopPost=") && $0.contains("systemctl start") && $0.contains("outpost-relay.service") })
        let execs = lines.filter { $0.hasPrefix("ExecStart=") }
        #expect(execs.first?.contains("relay check") == true && execs.last?.contains("store gc") == true)
        #expect(FileManager.default.fileExists(atPath: Self.deploy + "/outpost-relay-maintenance.timer"))
    }
}
