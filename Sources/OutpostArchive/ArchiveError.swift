import OutpostCore

#if canImport(Glibc)
    import Glibc
#endif

/// The archive layer's name for its errors (backup and restore on the local file system) (one type for every layer: `OutpostError`).
public typealias ArchiveError = OutpostError

extension OutpostError {
    static func system(_ err: Int32, _ action: String, _ path: String) -> ArchiveError {
        let reason = String(cString: strerror(err))
        if err == ENOSPC || err == EDQUOT {
            return ArchiveError(.diskFull, "the disk holding \(path) is full (\(action): \(reason)); free space there and run the restore again")
        }
        return ArchiveError(.io, "\(action) \(path) failed: \(reason)")
    }
}

/// A file the job could not handle; the job goes on and lists these at the end (like MARS's failed-files list).
public struct FailedFile: Sendable, Codable, Equatable {
    public var path: String
    public var reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
}

extension ArchiveError {
    /// An error every other file of a restore would meet too: a full disk, a repository that cannot be reached
    /// (its client gave up after its retries) or that refuses this machine. The restore stops at the first one,
    /// instead of failing file after file, each after its own retries.
    var stopsTheRestore: Bool { [.diskFull, .unreachable, .unauthorized].contains(code) }
}
