import Foundation
import Testing

// stat's fields come through CoreFoundation's headers once NIO is in the test target's graph.
#if canImport(CoreFoundation)
    import CoreFoundation
#endif

#if canImport(Glibc)
    // Hummingbird, which OutpostHTTP brings into this target, makes CDispatch the module that declares `stat`.
    import CDispatch
    import Glibc
#endif

/// Runs the real `outpost` binary, built next to the test bundle by `swift build --build-tests`.
enum CLI {
    static let binary: String = {
        if let env = ProcessInfo.processInfo.environment["OUTPOST_BIN"] { return env }
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent(), dir.deletingLastPathComponent().deletingLastPathComponent()] {
            let p = candidate.appendingPathComponent("outpost").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/outpost").path
    }()

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs to completion. Output goes to temporary files, not pipes: nothing in this process has to run
    /// for the child to make progress, so parallel tests cannot starve each other into a deadlock.
    @discardableResult
    static func run(_ args: [String], prefix: [String] = [], environment: [String: String] = [:]) throws -> Result {
        let p = Process()
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
        if prefix.isEmpty {
            p.executableURL = URL(fileURLWithPath: binary)
            p.arguments = args
        } else {
            p.executableURL = URL(fileURLWithPath: prefix[0])
            p.arguments = Array(prefix.dropFirst()) + [binary] + args
        }
        let base = NSTemporaryDirectory() + "/outpost-cli-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: base + ".out", contents: nil)
        FileManager.default.createFile(atPath: base + ".err", contents: nil)
        defer { unlink(base + ".out"); unlink(base + ".err") }
        let out = FileHandle(forWritingAtPath: base + ".out")!, err = FileHandle(forWritingAtPath: base + ".err")!
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        try? out.close()
        try? err.close()
        let stdout = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
        return Result(status: p.terminationStatus, stdout: stdout, stderr: stderr)
    }

    /// Runs another program (setup steps such as chown).
    static func system(_ path: String, _ args: [String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// Starts the binary and returns the running process (for kill tests).
    static func start(_ args: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return p
    }
}

final class Scratch {
    let path: String
    init(_ name: String = #function) {
        var base = NSTemporaryDirectory()
        while base.hasSuffix("/") { base.removeLast() }
        path = base + "/outpost-e2e-\(name.filter { $0.isLetter })-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func sub(_ n: String) -> String { path + "/" + n }
    func write(_ rel: String, _ data: Data, mode: mode_t = 0o644) {
        let p = sub(rel)
        try! FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: p, contents: data)
        chmod(p, mode)
    }
}

func randomData(_ n: Int) -> Data {
    var g = SystemRandomNumberGenerator()
    var d = Data(count: n)
    d.withUnsafeMutableBytes { buf in
        let words = buf.bindMemory(to: UInt64.self)
        for i in words.indices { words[i] = g.next() }
    }
    return d
}

/// Compares two trees: names, types, modes, sizes, contents and symlink targets.
func treesDiffer(_ a: String, _ b: String) -> [String] {
    var out: [String] = []
    let fm = FileManager.default
    func walk(_ rel: String) {
        var sa = stat(), sb = stat()
        guard lstat(a + rel, &sa) == 0, lstat(b + rel, &sb) == 0 else { out.append("\(rel): missing"); return }
        if sa.st_mode != sb.st_mode { out.append("\(rel): mode") }
        if (sa.st_mode & S_IFMT) == S_IFREG && fm.contents(atPath: a + rel) != fm.contents(atPath: b + rel) { out.append("\(rel): content") }
        if (sa.st_mode & S_IFMT) == S_IFREG && sa.st_mtim.tv_sec != sb.st_mtim.tv_sec { out.append("\(rel): mtime") }
        if (sa.st_mode & S_IFMT) == S_IFLNK
            && (try? fm.destinationOfSymbolicLink(atPath: a + rel)) != (try? fm.destinationOfSymbolicLink(atPath: b + rel))
        {
            out.append("\(rel): link")
        }
        if (sa.st_mode & S_IFMT) == S_IFDIR {
            let na = ((try? fm.contentsOfDirectory(atPath: a + rel)) ?? []).sorted()
            let nb = ((try? fm.contentsOfDirectory(atPath: b + rel)) ?? []).sorted()
            if na != nb { out.append("\(rel): entries \(na) vs \(nb)"); return }
            for n in na { walk(rel + "/" + n) }
        }
    }
    walk("")
    return out
}
