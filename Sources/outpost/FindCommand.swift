import ArgumentParser
import Foundation
import OutpostCore
#if canImport(Glibc)
import Glibc
#endif

struct FindCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "find",
        abstract: "Show which recovery points hold files whose path matches a pattern.",
        discussion: "The pattern is a glob (fnmatch): with a '/', it matches the whole path; without, an entry's name."
    )
    @OptionGroup var target: TargetOptions
    @Option(help: "Only this machine's recovery points (with --store).") var machine: String?
    @Flag(help: "Print JSON.") var json = false
    @Argument(help: "Glob, e.g. '*.xlsx' or '/srv/shares/*/budget*'.") var pattern: String

    struct Match: Encodable { var point: String; var machine: String; var time: Date; var path: String; var size: UInt64 }

    func run() async throws {
        let matches = try await withAccess(target, purpose: "`outpost find`") { access -> [Match] in
            var out: [Match] = []
            // Trees are shared between recovery points: match each once, keep the relative paths.
            var memo: [ChunkID: [(String, UInt64)]] = [:]
            func walk(_ id: ChunkID, prefix: String) async throws -> [(String, UInt64)] {
                if let hit = memo[id] { return hit.map { (prefix + $0.0, $0.1) } }
                var found: [(String, UInt64)] = []
                for node in try await access.loadTree(id).nodes {
                    let rel = "/" + node.nameString
                    if self.matches(path: rel, full: prefix + rel, name: node.name) { found.append((rel, node.size)) }
                    if node.type == .directory, let sub = node.subtree {
                        found += try await walk(sub, prefix: "").map { (rel + $0.0, $0.1) }
                    }
                }
                memo[id] = pattern.contains("/") ? nil : found
                return found.map { (prefix + $0.0, $0.1) }
            }
            for p in try await access.points(machine: machine) {
                guard let root = p.point.root else { continue }
                for (path, size) in try await walk(root, prefix: "") {
                    out.append(Match(point: p.id.hex, machine: p.point.machine, time: p.point.finishedAt, path: path, size: size))
                }
            }
            return out
        }
        if json { try printJSON(matches); return }
        for m in matches { print("\(m.point.prefix(8))  \(m.time.formatted(.iso8601))  \(m.machine)  \(m.path)") }
        if matches.isEmpty { printErr("no recovery point holds a path matching \(pattern.debugDescription)") }
    }

    /// Name patterns are memoised per tree; whole-path patterns are checked against the full path.
    func matches(path: String, full: String, name: [UInt8]) -> Bool {
        if pattern.contains("/") { return fnmatch(pattern, full, 0) == 0 }
        var z = name
        z.append(0)
        return z.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { fnmatch(pattern, $0.baseAddress!, 0) == 0 } }
    }
}
