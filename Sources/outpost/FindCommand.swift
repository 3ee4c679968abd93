import ArgumentParser
import Foundation
import OutpostArchive
import OutpostCore

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
        let found = try await withAccess(target, purpose: "`outpost find`") { access in
            try await PointListing.find(pattern, in: try await access.points(machine: machine), repository: access.repository)
        }
        let matches = found.map {
            Match(
                point: $0.point.id.hex, machine: $0.point.point.machine, time: $0.point.point.finishedAt,
                path: String(decoding: $0.path, as: UTF8.self), size: $0.size, bytes: $0.path)
        }
        if json { try printJSON(matches); return }
        for m in matches {
            print("\(m.point.prefix(8))  \(m.time.formatted(.iso8601))  \(Terminal.escaped(m.machine))  \(Terminal.escaped(bytes: m.bytes))")
        }
        if matches.isEmpty { printErr("no recovery point holds a path matching \(pattern.debugDescription)") }
    }
}
