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

    /// `path` is the name as stored, for JSON (whose string escaping is safe for a terminal); `bytes` the raw
    /// path, printed with control characters and bytes that are not UTF-8 escaped (`\e`, `\x9b`).
    struct Match: Encodable {
        var point: String; var machine: String; var time: Date; var path: String; var size: UInt64
        var bytes: [UInt8]
        enum CodingKeys: String, CodingKey { case point, machine, time, path, size }
    }

    func run() async throws {
        let matches = try await withAccess(target, purpose: "`outpost find`") { access -> [Match] in
            var out: [Match] = []
            let wholePath = pattern.contains("/")
            // Trees are shared between recovery points. A name pattern's matches in a tree do not depend on
            // where the tree is: they are memoised relative to it. A whole-path pattern is matched against full
            // paths, so it is not. Paths are raw bytes.
            var memo: [ChunkID: [([UInt8], UInt64)]] = [:]
            func walk(_ id: ChunkID, at dir: [UInt8]) async throws -> [([UInt8], UInt64)] {
                if !wholePath, let hit = memo[id] { return hit.map { (dir + $0.0, $0.1) } }
                let base = wholePath ? dir : []
                var found: [([UInt8], UInt64)] = []
                for node in try await access.loadTree(id).nodes {
                    let path = base + [0x2f] + node.name
                    if self.matches(full: path, name: node.name) { found.append((path, node.size)) }
                    if node.type == .directory, let sub = node.subtree { found += try await walk(sub, at: path) }
                }
                if wholePath { return found }
                memo[id] = found
                return found.map { (dir + $0.0, $0.1) }
            }
            for p in try await access.points(machine: machine) {
                guard let root = p.point.root else { continue }
                for (path, size) in try await walk(root, at: []) {
                    out.append(Match(point: p.id.hex, machine: p.point.machine, time: p.point.finishedAt,
                                     path: String(decoding: path, as: UTF8.self), size: size, bytes: path))
                }
            }
            return out
        }
        if json { try printJSON(matches); return }
        for m in matches { print("\(m.point.prefix(8))  \(m.time.formatted(.iso8601))  \(Terminal.escaped(m.machine))  \(Terminal.escaped(bytes: m.bytes))") }
        if matches.isEmpty { printErr("no recovery point holds a path matching \(pattern.debugDescription)") }
    }

    /// Name patterns are memoised per tree; whole-path patterns are checked against the full path.
    func matches(full: [UInt8], name: [UInt8]) -> Bool {
        var z = pattern.contains("/") ? full : name
        z.append(0)
        return z.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { fnmatch(pattern, $0.baseAddress!, 0) == 0 } }
    }
}
