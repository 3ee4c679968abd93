#if canImport(Glibc)
    import Glibc
#endif

/// The one glob rule of Outpost, for `backup --exclude` and `find`: fnmatch(3) without flags (so `*` also
/// matches a `/`). A pattern with a `/` matches an entry's whole absolute path; one without matches its name,
/// wherever the entry is. Paths and names are raw bytes.
public struct GlobPattern: Sendable {
    public let pattern: String
    /// The pattern holds a `/`: it is matched against whole paths, not names.
    public let matchesWholePath: Bool

    public init(_ pattern: String) {
        self.pattern = pattern
        matchesWholePath = pattern.contains("/")
    }

    /// Whether the entry named `name` at absolute `path` matches.
    public func matches(path: [UInt8], name: [UInt8]) -> Bool {
        FS.withCPath(matchesWholePath ? path : name) { fnmatch(pattern, $0, 0) == 0 }
    }
}

/// `--exclude` patterns: an entry matching any of them (`GlobPattern`) is left out, with its content.
public struct ExclusionList: Sendable {
    public let patterns: [String]
    private let globs: [GlobPattern]

    public init(_ patterns: [String]) {
        self.patterns = patterns
        globs = patterns.map(GlobPattern.init)
    }

    func excludes(path: [UInt8], name: [UInt8]) -> Bool {
        globs.contains { $0.matches(path: path, name: name) }
    }
}
