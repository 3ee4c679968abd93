import OutpostCore

/// What a backup reads: the named paths, as a trie of path components (the recovery point's tree mirrors their
/// absolute paths, and the folders above them hold only the way down), and the exclusions that leave entries
/// below them out.
struct Selection {
    final class Trie {
        var children: [[UInt8]: Trie] = [:]
        /// Everything below is backed up (not only the way down to a selected path).
        var selected = false
    }

    let root = Trie()
    /// The named paths, absolute and sorted, as the recovery point records them.
    private(set) var paths: [String] = []
    let exclusions: ExclusionList

    /// Checks each path exists; a path inside another selected one adds nothing.
    init(paths: [String], exclusions: ExclusionList) throws {
        self.exclusions = exclusions
        guard !paths.isEmpty else { throw ArchiveError(.invalidPath, "no path to back up; name at least one file or folder") }
        for p in paths {
            let abs = FS.absolute(p)
            let (_, err) = FS.lstat(Array(abs.utf8))
            if err != 0 {
                throw ArchiveError(.invalidPath, "cannot back up \(abs): \(Errno(err).message); check the path")
            }
            guard abs != "/" else { throw ArchiveError(.invalidPath, "backing up / as a whole is not supported; name the folders to protect") }
            self.paths.append(abs)
            var node = root
            for comp in abs.split(separator: "/") {
                let key = Array(comp.utf8)
                if node.selected { break }
                let next = node.children[key] ?? Trie()
                node.children[key] = next
                node = next
            }
            node.selected = true
            node.children = [:]
        }
        self.paths.sort()
    }

    func excludes(path: [UInt8], name: [UInt8]) -> Bool { exclusions.excludes(path: path, name: name) }
}
