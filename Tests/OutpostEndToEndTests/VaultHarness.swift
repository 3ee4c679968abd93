import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A real `outpost vault serve` on 127.0.0.1.
final class VaultHarness {
    let scratch: Scratch
    let data: String
    private(set) var process: Process?
    private(set) var port = 0
    let logPath: String

    /// `storage`: more `vault init` options, such as `--storage s3 …`.
    init(_ scratch: Scratch, name: String = "vault", replication: String = "grs", storage: [String] = []) throws {
        self.scratch = scratch
        data = scratch.sub(name)
        logPath = scratch.sub("\(name).log")
        let r = try CLI.run(
            ["vault", "init", "--data", data, "--name", name, "--url", "https://127.0.0.1:1", "--replication", replication] + storage)
        guard r.status == 0 else { throw HarnessError("vault init failed: \(r.stderr)") }
    }

    /// A harness over a vault data directory that exists already (a second node's copy): nothing is initialised.
    init(existing data: String, in scratch: Scratch, name: String) {
        self.scratch = scratch
        self.data = data
        logPath = scratch.sub("\(name).log")
    }

    /// `extra`: more `vault serve` options, such as `--console-listen`.
    func start(extra: [String] = []) throws {
        let portFile = scratch.sub("vport-\(UUID().uuidString.prefix(6))")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary)
        p.arguments = ["vault", "serve", "--data", data, "--listen", "127.0.0.1:\(port)", "--port-file", portFile] + extra
        FileManager.default.createFile(atPath: logPath, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: logPath)
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let t = try? String(contentsOfFile: portFile, encoding: .utf8), let n = Int(t.trimmingCharacters(in: .whitespacesAndNewlines)) {
                port = n; return
            }
            if !p.isRunning { throw HarnessError("vault exited: \((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")") }
            usleep(10_000)
        }
        throw HarnessError("vault did not listen within 30 s")
    }

    /// A fresh credentials file for this vault (pointing at the bound port).
    func credentials(_ name: String, recover: String? = nil) throws -> String {
        let out = scratch.sub("\(name).creds")
        var args = ["vault", "credentials", "--data", data, "--out", out, "--url", "https://127.0.0.1:\(port)"]
        if let recover { args += ["--recover", recover] }
        let r = try CLI.run(args)
        guard r.status == 0 else { throw HarnessError("vault credentials failed: \(r.stderr)") }
        return out
    }

    func kill9() {
        guard let p = process, p.isRunning else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    @discardableResult
    func stop() -> Int32 {
        guard let p = process, p.isRunning else { return 0 }
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// Every byte under the vault's data directory (objects, secondary copy, registry, settings).
    func allBytes() -> [UInt8] {
        var out: [UInt8] = []
        if let e = FileManager.default.enumerator(atPath: data) {
            while let rel = e.nextObject() as? String {
                if let d = FileManager.default.contents(atPath: data + "/" + rel) { out += d }
            }
        }
        return out
    }

    /// Object files of one relay's container in the primary copy set.
    func objectFiles() -> [String] {
        let base = data + "/objects/containers"
        return ((try? FileManager.default.subpathsOfDirectory(atPath: base)) ?? []).filter { p in
            (try? FileManager.default.attributesOfItem(atPath: base + "/" + p)[.type] as? FileAttributeType) == .typeRegular
        }.map { base + "/" + $0 }
    }

    /// Registers `relay` with this vault as `name`: a generated passphrase in `scratch/NAME.pass` and the fast key
    /// derivation of tests. Throws with the command's stderr when it fails.
    func register(_ relay: RelayHarness, as name: String, in scratch: Scratch) throws {
        let r = try CLI.run([
            "relay", "register", "--data", relay.data, "--vault-credentials", try credentials(name),
            "--passphrase-file", scratch.sub("\(name).pass"), "--generate-passphrase", "--name", name, "--fast-kdf-for-tests",
        ])
        guard r.status == 0 else { throw HarnessError("relay register failed: \(r.stderr)") }
    }

    deinit { kill9() }
}

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return false }
    let first = needle[0]
    var i = 0
    while i <= haystack.count - needle.count {
        if haystack[i] == first && Array(haystack[i..<i + needle.count]) == needle { return true }
        i += 1
    }
    return false
}
