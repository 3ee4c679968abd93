import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `vault serve`'s settings file, Config/vault.toml, and the OUTPOST_VAULT_* variables that override it (issue 13).
@Suite struct VaultSettingsEndToEndTests {
    static let sample = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Config/vault.toml").path

    /// A vault made by `vault init` in the scratch folder.
    func makeVault(_ s: Scratch) throws -> String {
        let data = s.sub("vault")
        let r = try CLI.run(["vault", "init", "--data", data, "--name", "v", "--url", "https://127.0.0.1:1", "--replication", "lrs"])
        guard r.status == 0 else { throw HarnessError("vault init failed: \(r.stderr)") }
        return data
    }

    /// Config/vault.toml with every setting uncommented and given these values.
    func configured(_ values: [String: String]) throws -> String {
        var lines = try String(contentsOfFile: Self.sample, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var found: Set<String> = []
        for (i, line) in lines.enumerated() {
            for (key, value) in values where line.hasPrefix("# \(key) = ") {
                lines[i] = "\(key) = \(value)"
                found.insert(key)
            }
        }
        #expect(found == Set(values.keys), "Config/vault.toml lacks a commented line for \(Set(values.keys).subtracting(found))")
        return lines.joined(separator: "\n")
    }

    /// Starts `vault serve` without --listen and waits for its port; the caller stops it.
    func serve(_ s: Scratch, data: String, environment: [String: String]) throws -> (process: Process, port: Int, log: String) {
        let portFile = s.sub("port-\(UUID().uuidString.prefix(6))")
        let logPath = s.sub("serve-\(UUID().uuidString.prefix(6)).log")
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary)
        p.arguments = ["vault", "serve", "--data", data, "--port-file", portFile]
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        p.standardError = FileHandle(forWritingAtPath: logPath)
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let t = try? String(contentsOfFile: portFile, encoding: .utf8), let n = Int(t.trimmingCharacters(in: .whitespacesAndNewlines)) {
                return (p, n, (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")
            }
            if !p.isRunning { throw HarnessError("vault serve exited: \((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")") }
            usleep(10_000)
        }
        kill(p.processIdentifier, SIGKILL)
        throw HarnessError("vault serve did not listen within 30 s")
    }

    func stop(_ p: Process) -> Int32 {
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// True when a TCP connection to host:port is accepted.
    func accepts(_ host: String, _ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    /// `vault init` writes the sample, byte for byte, as the relay's init writes relay.toml; all of it commented.
    @Test func initWritesConfigVaultToml() throws {
        let s = Scratch()
        let data = try makeVault(s)
        let written = try #require(FileManager.default.contents(atPath: data + "/vault.toml"))
        #expect(written == FileManager.default.contents(atPath: Self.sample), "DATA/vault.toml differs from Config/vault.toml")
        let mode = try #require(FileManager.default.attributesOfItem(atPath: data + "/vault.toml")[.posixPermissions] as? Int)
        #expect(mode == 0o600)
        let text = String(decoding: written, as: UTF8.self)
        #expect(!text.split(separator: "\n").contains { !$0.isEmpty && !$0.hasPrefix("#") }, "a setting is not commented out")
        #expect(text.contains("OUTPOST_VAULT_LISTEN"))
    }

    /// Every key of Config/vault.toml, uncommented, reaches the running vault; OUTPOST_VAULT_* variables win over the
    /// file, key by key. Without the file's settings the vault would listen on 127.0.0.1 at the url's port (1).
    @Test func serveHonoursTheFileAndTheEnvironmentOverridesIt() throws {
        let s = Scratch()
        let data = try makeVault(s)
        try configured([
            "listen": #""127.0.0.2:0""#, "max_connections": "300", "min_upload_kbps": "16", "put_memory_mib": "256", "log_level": #""debug""#,
        ]).write(toFile: data + "/vault.toml", atomically: true, encoding: .utf8)

        let fromFile = try serve(s, data: data, environment: [:])
        #expect(fromFile.log.contains("listening on https://127.0.0.2:\(fromFile.port)"), "\(fromFile.log)")
        #expect(accepts("127.0.0.2", fromFile.port))
        for expected in ["max_connections 300", "min_upload 2000 B/s", "put_memory_mib 256", "log_level debug", "vault/vault.toml)"] {
            #expect(fromFile.log.contains(expected), "\(expected): \(fromFile.log)")
        }
        #expect(stop(fromFile.process) == 0)

        let overridden = try serve(s, data: data, environment: ["OUTPOST_VAULT_LISTEN": "127.0.0.1:0", "OUTPOST_VAULT_MAX_CONNECTIONS": "400"])
        #expect(overridden.log.contains("listening on https://127.0.0.1:\(overridden.port)"), "\(overridden.log)")
        #expect(accepts("127.0.0.1", overridden.port))
        for expected in ["max_connections 400", "min_upload 2000 B/s", "put_memory_mib 256", "OUTPOST_VAULT_LISTEN", "OUTPOST_VAULT_MAX_CONNECTIONS"]
        {
            #expect(overridden.log.contains(expected), "\(expected): \(overridden.log)")
        }
        #expect(stop(overridden.process) == 0)
    }

    /// A mistake stops `vault serve` before it listens, with exit 64 and a message that names the key or variable.
    @Test func aBadSettingIsRefusedWithItsName() throws {
        let s = Scratch()
        let data = try makeVault(s)
        let config = s.sub("bad.toml")
        let cases: [(file: String?, env: [String: String], named: [String])] = [
            ("listen_adress = \"0.0.0.0:8441\"\n", [:], ["listen_adress", "has no setting"]),
            ("max_connections = 5\n", [:], ["max_connections", "16 to 65536"]),
            ("max_connections = \"many\"\n", [:], ["max_connections", "\"many\""]),
            ("listen = \"everywhere\"\n", [:], ["listen", "HOST:PORT"]),
            ("log_level = \"loud\"\n", [:], ["log_level", "\"loud\""]),
            ("immutable = false\n", [:], ["immutable", "vault set"]),
            ("max_connections = \n", [:], ["bad.toml", "line 1"]),
            (nil, ["OUTPOST_VAULT_MAX_CONNECTIONS": "lots"], ["OUTPOST_VAULT_MAX_CONNECTIONS", "\"lots\""]),
            (nil, ["OUTPOST_VAULT_LISTN": "0.0.0.0:8441"], ["OUTPOST_VAULT_LISTN", "not a vault setting"]),
            (nil, ["OUTPOST_VAULT_PUT_MEMORY_MIB": "1"], ["OUTPOST_VAULT_PUT_MEMORY_MIB", "64 to 65536"]),
        ]
        for c in cases {
            var args = ["vault", "serve", "--data", data, "--listen", "127.0.0.1:0"]
            if let file = c.file {
                try file.write(toFile: config, atomically: true, encoding: .utf8)
                args += ["--config", config]
            }
            // Under timeout(1): a setting wrongly accepted would leave the vault serving, not hang the test.
            let r = try CLI.run(args, prefix: ["/usr/bin/timeout", "20"], environment: c.env)
            #expect(r.status == 64, "\(c.file ?? "\(c.env)"): exit \(r.status), \(r.stderr)")
            for word in c.named { #expect(r.stderr.contains(word), "\(word) not in: \(r.stderr)") }
            #expect(!r.stderr.contains("listening"))
        }
        let missing = try CLI.run(["vault", "serve", "--data", data, "--config", s.sub("nowhere.toml")])
        #expect(missing.status == 64 && missing.stderr.contains(s.sub("nowhere.toml")), "\(missing.stderr)")
    }
}
