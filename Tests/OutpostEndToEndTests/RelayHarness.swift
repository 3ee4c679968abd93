import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A real `outpost relay serve` on 127.0.0.1, started and stopped by a test.
final class RelayHarness {
    let scratch: Scratch
    let data: String
    let fingerprint: String
    private(set) var process: Process?
    private(set) var port: Int = 0
    let stderrPath: String

    init(_ scratch: Scratch, name: String = "relay", dataDir: String? = nil) throws {
        self.scratch = scratch
        data = dataDir ?? scratch.sub(name)
        stderrPath = scratch.sub("\(name).log")
        let r = try CLI.run(["relay", "init", "--data", data, "--hostname", "localhost"])
        guard r.status == 0 else { throw HarnessError("relay init failed: \(r.stderr)") }
        fingerprint = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A harness over a relay data directory that exists already (a rebuilt relay): nothing is initialised.
    init(existing data: String, in scratch: Scratch, name: String) {
        self.scratch = scratch
        self.data = data
        stderrPath = scratch.sub("\(name).log")
        fingerprint = ((try? CLI.run(["relay", "fingerprint", "--data", data]).stdout) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    var url: String { "https://127.0.0.1:\(port)" }

    /// Starts the server (on `port`, or a free port the first time) and waits until it listens.
    func start(extra: [String] = [], environment: [String: String] = [:]) throws {
        let portFile = scratch.sub("port-\(UUID().uuidString.prefix(6))")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.binary)
        p.arguments = ["relay", "serve", "--data", data, "--listen", "127.0.0.1:\(port)", "--port-file", portFile] + extra
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, b in b } }
        FileManager.default.createFile(atPath: stderrPath, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: stderrPath)
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let n = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                port = n
                return
            }
            if !p.isRunning { throw HarnessError("relay exited with \(p.terminationStatus): \(log)") }
            usleep(10_000)
        }
        throw HarnessError("relay did not listen within 30 s: \(log)")
    }

    var log: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// SIGTERM and wait: a graceful stop exits 0.
    @discardableResult
    func stop() -> Int32 {
        guard let p = process, p.isRunning else { return process?.terminationStatus ?? 0 }
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        return p.terminationStatus
    }

    func kill9() {
        guard let p = process, p.isRunning else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    /// Adds a machine and enrolls it; returns the path of its client configuration.
    func enroll(_ machine: String) throws -> String {
        let add = try CLI.run(["relay", "add-machine", "--data", data, machine])
        guard add.status == 0 else { throw HarnessError("add-machine failed: \(add.stderr)") }
        let token = add.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let config = scratch.sub("\(machine).toml")
        let e = try CLI.run(["enroll", "--relay", url, "--token", token, "--fingerprint", fingerprint, "--config", config])
        guard e.status == 0 else { throw HarnessError("enroll failed: \(e.stderr)") }
        return config
    }

    deinit { kill9() }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// The port a server wrote to `file` once it listened, waited for with a deadline: a server writes each of its
/// listeners' port files when that listener is bound, so one file may appear before another.
func waitForPortFile(_ file: String, _ what: String) throws -> Int {
    let deadline = Date().addingTimeInterval(30)
    while Date() < deadline {
        if let t = try? String(contentsOfFile: file, encoding: .utf8), let n = Int(t.trimmingCharacters(in: .whitespacesAndNewlines)) { return n }
        usleep(10_000)
    }
    throw HarnessError("\(what) did not listen within 30 s")
}

func json(_ s: String) -> Any? { try? JSONSerialization.jsonObject(with: Data(s.utf8)) }
