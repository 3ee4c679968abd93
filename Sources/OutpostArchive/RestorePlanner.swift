import Foundation
import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// Decides what a restore may write, before and while it writes: which entries the include list selects,
/// whether the paths it names exist, which entries of the target are in the way (by default the restore
/// refuses before writing anything), and for an entry found in the way once writing, whether to skip it,
/// replace it or refuse (`--skip`, `--overwrite`, the default).
struct RestorePlanner: Sendable {
    let existing: ExistingEntries
    let trees: TreeWalker

    /// Which part of the tree a path is in, given the `include` list.
    struct Filter: Sendable {
        let includes: [[[UInt8]]]
        enum Decision { case all, ancestor, none }

        func decide(_ components: [[UInt8]]) -> Decision {
            if includes.isEmpty { return .all }
            var ancestor = false
            for inc in includes {
                if components.count >= inc.count && Array(components[0..<inc.count]) == inc { return .all }
                if components.count < inc.count && Array(inc[0..<components.count]) == components { ancestor = true }
            }
            return ancestor ? .ancestor : .none
        }
    }

    /// Throws `notFound` for the first included path that is not in the recovery point.
    func checkIncludes(_ filter: Filter, in root: Tree, point: RecoveryPointInfo) async throws {
        for inc in filter.includes {
            switch try await trees.resolve(inc, from: root) {
            case .top, .node: continue
            case .missing, .notAFolder:
                throw ArchiveError(
                    .notFound,
                    "\("/" + inc.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")) is not in recovery point \(point.id.shortHex); list its content with `outpost ls`"
                )
            }
        }
    }

    /// By default, into a target that holds anything: refuses (`conflict`) if an entry to restore is there
    /// already, before anything is written.
    func refuseConflicts(_ root: Tree, target: String, filter: Filter) async throws {
        guard existing == .refuse, let names = try? FileManager.default.contentsOfDirectory(atPath: target), !names.isEmpty else { return }
        let conflicts = try await conflicts(root, target: target, filter: filter)
        if !conflicts.isEmpty {
            let shown = conflicts.prefix(5).joined(separator: ", ")
            throw ArchiveError(
                .conflict,
                "the target already holds \(conflicts.count) of the entries to restore (\(shown)\(conflicts.count > 5 ? ", …" : "")); nothing was written: restore into an empty directory, or pass --overwrite or --skip"
            )
        }
    }

    /// Entries to restore that are in the target already (a folder in place of a folder is not one: its
    /// content is looked at), at most 101.
    func conflicts(_ root: Tree, target: String, filter: Filter) async throws -> [String] {
        var out: [String] = []
        try await trees.walk(root, at: []) { node, path in
            if filter.decide(path.split(separator: 0x2f).map(Array.init)) == .none { return .skip }
            let full = target + String(decoding: path, as: UTF8.self)
            var st = stat()
            guard lstat(full, &st) == 0 else { return .skip }
            if node.type == .directory && (st.st_mode & S_IFMT) == S_IFDIR { return .descend }
            out.append(full)
            return out.count > 100 ? .stop : .skip
        }
        return out
    }

    enum Resolution { case replace, skip }

    /// What to do with an entry in the way once writing: replace it (`--overwrite`), keep it (`--skip`), or
    /// by default throw `conflict` with `message`.
    func resolve(conflict message: @autoclosure () -> String) throws -> Resolution {
        switch existing {
        case .overwrite: .replace
        case .skip: .skip
        case .refuse: throw ArchiveError(.conflict, message())
        }
    }

    /// Removes a file or link (never a non-empty directory) that stands where an entry is restored.
    static func removeExisting(_ name: [UInt8], in parentFD: Int32, path: @autoclosure () -> String) throws {
        var st = stat()
        guard FS.withCPath(name, { fstatat(parentFD, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else { return }
        let isDir = (st.st_mode & S_IFMT) == S_IFDIR
        if FS.withCPath(name, { unlinkat(parentFD, $0, isDir ? AT_REMOVEDIR : 0) }) != 0 {
            throw ArchiveError.system(errno, isDir ? "removing the directory in the way at" : "removing", path())
        }
    }
}
